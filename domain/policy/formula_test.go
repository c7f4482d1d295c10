package policy

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// dumpFormula writes a syntax tree as an S-expression, for comparing trees.
func dumpFormula(n *fnode) string {
	switch n.op {
	case fNum:
		return formulaNumber(n.num)
	case fRef, fCur:
		return n.ref()
	case fNeg, fPos, fNot:
		return "(" + n.op.String() + " " + dumpFormula(n.x) + ")"
	case fCond:
		return "(?: " + dumpFormula(n.x) + " " + dumpFormula(n.y) + " " + dumpFormula(n.z) + ")"
	}
	return "(" + n.op.String() + " " + dumpFormula(n.x) + " " + dumpFormula(n.y) + ")"
}

// formatFormula writes a syntax tree back as source with as few parentheses as the
// precedences allow: compiling it must give the same tree.
func formatFormula(n *fnode) string {
	wrap := func(c *fnode, paren bool) string {
		if paren {
			return "(" + formatFormula(c) + ")"
		}
		return formatFormula(c)
	}
	switch n.op {
	case fNum:
		return formulaNumber(n.num)
	case fRef, fCur:
		return n.ref()
	case fNeg, fPos, fNot:
		return n.op.String() + wrap(n.x, n.x.op.prec() < n.op.prec())
	case fCond:
		return wrap(n.x, n.x.op.prec() <= fCond.prec()) + " ? " + formatFormula(n.y) + " : " + formatFormula(n.z)
	}
	p := n.op.prec()
	return wrap(n.x, n.x.op.prec() < p) + " " + n.op.String() + " " + wrap(n.y, n.y.op.prec() <= p)
}

func mustCompileFormula(t testing.TB, src string) *Formula {
	t.Helper()
	f, err := CompileFormula(src)
	if err != nil {
		t.Fatalf("CompileFormula(%q): %v", src, err)
	}
	return f
}

func TestCompileFormulaTree(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"number", "42", "42"},
		{"decimals and exponents", ".5 + 5. + 1e3 + 2.5E-1 + 1e+2", "(+ (+ (+ (+ 0.5 5) 1000) 0.25) 100)"},
		{"attribute", "$(temperature)", "$(temperature)"},
		{"current value", "$$(temperature)", "$$(temperature)"},
		{"attribute name chars and spaces", "$( a_1-B2 )", "$(a_1-B2)"},
		{"whitespace", "\t1\n+\r\n2 ", "(+ 1 2)"},
		{"* before +", "1 + 2 * 3", "(+ 1 (* 2 3))"},
		{"parentheses", "(1 + 2) * 3", "(* (+ 1 2) 3)"},
		{"- is left-associative", "1 - 2 - 3 - 4", "(- (- (- 1 2) 3) 4)"},
		{"/ is left-associative", "8 / 4 / 2", "(/ (/ 8 4) 2)"},
		{"* and % bind alike", "2 * 3 % 4 / 5", "(/ (% (* 2 3) 4) 5)"},
		{"unary before *", "-2 * 3", "(* (- 2) 3)"},
		{"unary minus twice", "- -2", "(- (- 2))"},
		{"unary minus glued", "--2", "(- (- 2))"},
		{"unary plus", "+$(a)", "(+ $(a))"},
		{"unary minus on parentheses", "-($(a) + 1)", "(- (+ $(a) 1))"},
		{"! before &&", "!$(a) && $(b)", "(&& (! $(a)) $(b))"},
		{"&& before ||", "$(a) || $(b) && $(c)", "(|| $(a) (&& $(b) $(c)))"},
		{"&& before || on the left", "$(a) && $(b) || $(c)", "(|| (&& $(a) $(b)) $(c))"},
		{"|| is left-associative", "$(a) || $(b) || $(c)", "(|| (|| $(a) $(b)) $(c))"},
		{"< before ==", "$(a) < 1 == $(b) > 2", "(== (< $(a) 1) (> $(b) 2))"},
		{"+ before <", "$(a) + 1 < $(b) * 2", "(< (+ $(a) 1) (* $(b) 2))"},
		{"== before &&", "$(a) == 1 && $(b) != 2", "(&& (== $(a) 1) (!= $(b) 2))"},
		{"keywords", "$(a) and not $(b) OR $(c)", "(|| (&& $(a) (! $(b))) $(c))"},
		{"keywords in any case", "NOT $(a) And $(b)", "(&& (! $(a)) $(b))"},
		{"= means ==", "$(a) = 1", "(== $(a) 1)"},
		{"current and in-process", "$$(a) - $(a)", "(- $$(a) $(a))"},
		{"ternary", "$(a) > 1 || $(b) ? 1 + 2 : 3", "(?: (|| (> $(a) 1) $(b)) (+ 1 2) 3)"},
		{"ternary is right-associative", "$(a) ? 1 : $(b) ? 2 : 3", "(?: $(a) 1 (?: $(b) 2 3))"},
		{"ternary in the middle", "$(a) ? $(b) ? 1 : 2 : 3", "(?: $(a) (?: $(b) 1 2) 3)"},
		{"ternary in parentheses", "($(a) ? 1 : 2) * 3", "(* (?: $(a) 1 2) 3)"},
		{"ternary condition in parentheses", "($(a) ? $(b) : $(c)) ? 1 : 2", "(?: (?: $(a) $(b) $(c)) 1 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustCompileFormula(t, tt.src)
			if got := dumpFormula(f.root); got != tt.want {
				t.Errorf("CompileFormula(%q) = %s, want %s", tt.src, got, tt.want)
			}
			if got := f.String(); got != tt.src {
				t.Errorf("String() = %q, want %q", got, tt.src)
			}
			again := mustCompileFormula(t, formatFormula(f.root))
			if got := dumpFormula(again.root); got != tt.want {
				t.Errorf("format = %q compiles to %s, want %s", formatFormula(f.root), got, tt.want)
			}
		})
	}
}

func TestCompileFormulaErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", `formula "": at 0: expected an operand`},
		{"blank", "   ", `formula "   ": at 3: expected an operand`},
		{"missing right operand", "$(a) +", `formula "$(a) +": at 6: expected an operand`},
		{"missing left operand", "* 3", `formula "* 3": at 0: expected an operand`},
		{"empty parentheses", "()", `formula "()": at 1: expected an operand`},
		{"two operands", "1 2", `formula "1 2": at 2: expected an operator, got a number`},
		{"two attributes", "$(a) $(b)", `formula "$(a) $(b)": at 5: expected an operator, got an attribute`},
		{"call of a number", "1 (2)", `formula "1 (2)": at 2: expected an operator, got (`},
		{"stray colon", "1 : 2", `formula "1 : 2": at 2: expected an operator, got :`},
		{"stray not", "1 not 2", `formula "1 not 2": at 2: expected an operator, got !`},
		{"unopened parenthesis", "1)", `formula "1)": at 1: unexpected ) without (`},
		{"unclosed parenthesis", "(1", `formula "(1": at 2: expected ) for the ( at 0, got the end`},
		{"operand in parentheses", "(1 2)", `formula "(1 2)": at 3: expected ) for the ( at 0, got a number`},
		{"ternary without colon", "$(a) ? 1", `formula "$(a) ? 1": at 8: expected : for the ? at 5, got the end`},
		{"ternary without else", "$(a) ? 1 :", `formula "$(a) ? 1 :": at 10: expected an operand`},
		{"dollar without parenthesis", "$a", `formula "$a": at 1: expected ( after $`},
		{"lone dollar", "$", `formula "$": at 1: expected ( after $`},
		{"double dollar without parenthesis", "$$a", `formula "$$a": at 2: expected ( after $$`},
		{"triple dollar", "$$$(a)", `formula "$$$(a)": at 2: expected ( after $$`},
		{"empty attribute", "$()", `formula "$()": at 2: expected an attribute name after $(`},
		{"attribute starting with a digit", "$(1a)", `formula "$(1a)": at 2: expected an attribute name after $(`},
		{"empty current attribute", "$$( )", `formula "$$( )": at 4: expected an attribute name after $$(`},
		{"unclosed attribute", "$(a", `formula "$(a": at 3: expected ) after the attribute name "a"`},
		{"dotted attribute", "$(a.b)", `formula "$(a.b)": at 3: expected ) after the attribute name "a"`},
		{"two names", "$(a b)", `formula "$(a b)": at 4: expected ) after the attribute name "a"`},
		{"bare name", "humidity > 50", `formula "humidity > 50": at 0: unexpected name "humidity"; an attribute is written $(humidity)`},
		{"literal true", "$(a) == true", `formula "$(a) == true": at 8: unexpected name "true"; an attribute is written $(true)`},
		{"function", "max($(a), 1)", `formula "max($(a), 1)": at 0: unknown function "max": formulas have no functions`},
		{"single ampersand", "$(a) & $(b)", `formula "$(a) & $(b)": at 5: unexpected &; did you mean &&?`},
		{"single bar", "$(a) | $(b)", `formula "$(a) | $(b)": at 5: unexpected |; did you mean ||?`},
		{"string literal", `$(s) == "on"`, `formula "$(s) == \"on\"": at 8: unexpected character '"'`},
		{"comma", "1, 2", `formula "1, 2": at 1: unexpected character ','`},
		{"non-ASCII", "1 × 2", `formula "1 × 2": at 2: unexpected character '×'`},
		{"invalid UTF-8", "1 \xff", `formula "1 \xff": at 2: unexpected byte 0xff: not UTF-8`},
		{"bad token in parentheses", "(#", `formula "(#": at 1: unexpected character '#'`},
		{"bad token after unary", "-#", `formula "-#": at 1: unexpected character '#'`},
		{"bad token after ?", "$(a) ?#", `formula "$(a) ?#": at 6: unexpected character '#'`},
		{"long source cut at a rune", strings.Repeat(" ", 99) + "×",
			`formula "` + strings.Repeat(" ", 99) + `...": at 99: unexpected character '×'`},
		{"lone dot", ".", `formula ".": at 1: expected a digit after .`},
		{"dot before operator", "1 + .e3", `formula "1 + .e3": at 5: expected a digit after .`},
		{"exponent without digits", "1e", `formula "1e": at 2: expected the digits of the exponent of 1e`},
		{"signed exponent without digits", "1e+x", `formula "1e+x": at 3: expected the digits of the exponent of 1e+`},
		{"huge number", "1e999", `formula "1e999": at 0: number 1e999 is out of range`},
		{"two dots", "1.2.3", `formula "1.2.3": at 3: expected an operator, got a number`},
		{"minus on bool", "-(1 < 2)", `formula "-(1 < 2)": at 0: - wants a number, got bool`},
		{"plus on bool", "+!$(a)", `formula "+!$(a)": at 0: + wants a number, got bool`},
		{"bool in arithmetic", "(1 < 2) + 1", `formula "(1 < 2) + 1": at 8: + wants numbers, got bool`},
		{"bool on the right", "1 * ($(a) && $(b))", `formula "1 * ($(a) && $(b))": at 2: * wants numbers, got bool`},
		{"chained comparison", "1 < 2 < 3", `formula "1 < 2 < 3": at 6: < wants numbers, got bool`},
		{"== on two kinds", "(1 < 2) == 3", `formula "(1 < 2) == 3": at 8: == wants two operands of one kind, got bool and number`},
		{"bool ternary in arithmetic", "($(a) ? 1 < 2 : 3 < 4) + 1", `formula "($(a) ? 1 < 2 : 3 < 4) + 1": at 23: + wants numbers, got bool`},
		{"nested too deep", strings.Repeat("(", 65) + "1" + strings.Repeat(")", 65),
			`formula "` + strings.Repeat("(", 65) + "1" + strings.Repeat(")", 34) + `...": at 64: nested deeper than 64 levels`},
		{"unary too deep", strings.Repeat("-", 65) + "1", `formula "` + strings.Repeat("-", 65) + `1": at 64: nested deeper than 64 levels`},
		{"ternaries too deep", strings.Repeat("$(a) ? 1 : ", 65) + "1",
			`formula "` + strings.Repeat("$(a) ? 1 : ", 9) + `$...": at 709: nested deeper than 64 levels`},
		{"too long", strings.Repeat("1+", 2048) + "1",
			`formula "` + strings.Repeat("1+", 50) + `...": 4097 bytes, longer than the limit of 4096`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := CompileFormula(tt.src)
			if err == nil {
				t.Fatalf("CompileFormula(%q) = %s, want error %s", tt.src, dumpFormula(f.root), tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("CompileFormula(%q) error\n got %s\nwant %s", tt.src, err, tt.want)
			}
		})
	}
}

func TestCompileFormulaLimits(t *testing.T) {
	tests := []struct {
		name, src string
	}{
		{"64 parentheses", strings.Repeat("(", 64) + "1" + strings.Repeat(")", 64)},
		{"64 unary operators", strings.Repeat("!", 64) + "1"},
		{"64 ternaries", strings.Repeat("$(a) ? 1 : ", 64) + "1"},
		{"4096 bytes", strings.Repeat("1+", 2047) + "10"},
		{"long chain", strings.Repeat("$(a)-", 819) + "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustCompileFormula(t, tt.src)
			if _, err := f.Eval(func(string) (any, bool) { return 1.0, true }); err != nil {
				t.Errorf("Eval: %v", err)
			}
		})
	}
}

// formulaEnv is the fixed set of values the evaluation tests and the fuzzer use.
func formulaEnv(name string) (any, bool) {
	v, ok := map[string]any{
		"a":    10.0,
		"b":    int64(4),
		"i":    3,
		"z":    0.0,
		"zi":   int64(0),
		"neg":  -7.5,
		"t":    true,
		"f":    false,
		"s":    "on",
		"s2":   "off",
		"when": time.UnixMilli(1_700_000_000_000),
		"big":  1e308,
		"tiny": 5e-324,
		"nilv": nil,
		"bad":  []int{1},
		"inf":  math.Inf(1),
		"nan":  math.NaN(),
	}[name]
	return v, ok
}

func TestFormulaEval(t *testing.T) {
	tests := []struct {
		name, src string
		want      any    // float64, bool or string
		err       string // after `formula "src": `
	}{
		{name: "precedence", src: "1 + 2 * 3", want: 7.0},
		{name: "parentheses", src: "(1 + 2) * 3", want: 9.0},
		{name: "- is left-associative", src: "10 - 4 - 3", want: 3.0},
		{name: "/ is left-associative", src: "64 / 4 / 2", want: 8.0},
		{name: "% after *", src: "2 * 3 % 4", want: 2.0},
		{name: "% has the sign of the dividend", src: "-7 % 3", want: -1.0},
		{name: "% of a negative divisor", src: "7 % -3", want: 1.0},
		{name: "% of decimals", src: "5.5 % 2", want: 1.5},
		{name: "int64 and float64", src: "$(a) / $(b)", want: 2.5},
		{name: "int", src: "$(i) * 2", want: 6.0},
		{name: "unary minus", src: "-$(neg)", want: 7.5},
		{name: "unary plus", src: "+$(b)", want: 4.0},
		{name: "time in ms", src: "$(when) + 1000", want: 1_700_000_001_000.0},
		{name: "time compared", src: "$(when) > 1600000000000", want: true},
		{name: "lone number attribute", src: "$(b)", want: 4.0},
		{name: "lone time attribute", src: "$(when)", want: 1_700_000_000_000.0},
		{name: "lone bool", src: "$(t)", want: true},
		{name: "lone string", src: "$(s)", want: "on"},
		{name: "decimals", src: "0.1 + 0.2 > 0.3", want: true},
		{name: "denormal", src: "$(tiny) / 2", want: 0.0},
		{name: "<", src: "$(a) < 10", want: false},
		{name: "<=", src: "$(a) <= 10", want: true},
		{name: ">", src: "$(a) > 9.99", want: true},
		{name: ">=", src: "$(a) >= 10.01", want: false},
		{name: "== numbers", src: "$(a) == 10", want: true},
		{name: "= numbers", src: "$(b) = 4", want: true},
		{name: "!= numbers", src: "$(b) != 4", want: false},
		{name: "== int and float", src: "$(b) * 2.5 == $(a)", want: true},
		{name: "== bools", src: "$(t) == $(t)", want: true},
		{name: "!= bools", src: "$(t) != $(f)", want: true},
		{name: "== strings", src: "$(s) == $(s2)", want: false},
		{name: "!= strings", src: "$(s) != $(s2)", want: true},
		{name: "== same string", src: "$(s) == $(s)", want: true},
		{name: "== comparisons", src: "$(a) > 1 == $(b) > 1", want: true},
		{name: "&&", src: "$(a) > 5 && $(b) < 5", want: true},
		{name: "||", src: "$(a) < 5 || $(b) > 5", want: false},
		{name: "&& before ||", src: "$(t) || $(f) && $(f)", want: true},
		{name: "keywords", src: "$(t) AND NOT $(f)", want: true},
		{name: "&& on numbers", src: "$(a) && $(t)", want: true},
		{name: "|| on zeros", src: "$(z) || $(zi)", want: false},
		{name: "! on zero", src: "!$(z)", want: true},
		{name: "! on a number", src: "!$(neg)", want: false},
		{name: "! on a bool", src: "not $(t)", want: false},
		{name: "double !", src: "!!$(a)", want: true},
		{name: "&& skips the right side", src: "$(f) && $(missing)", want: false},
		{name: "|| skips the right side", src: "$(t) || $(missing)", want: true},
		{name: "&& skips on zero", src: "$(z) && $(missing) > 1", want: false},
		{name: "&& evaluates the right side", src: "$(t) && $(missing)", err: "$(missing) has no value"},
		{name: "|| evaluates the right side", src: "$(f) || $(missing)", err: "$(missing) has no value"},
		{name: "ternary then", src: "$(t) ? 1 : $(missing)", want: 1.0},
		{name: "ternary else", src: "$(f) ? $(missing) : 2", want: 2.0},
		{name: "ternary on a number", src: "$(z) ? 1 : 2", want: 2.0},
		{name: "ternary of strings", src: "$(a) > 5 ? $(s) : $(s2)", want: "on"},
		{name: "ternary of mixed kinds", src: "$(f) ? $(s) : 1 < 2", want: true},
		{name: "ternary chain", src: "$(f) ? 1 : $(f) ? 2 : 3", want: 3.0},
		{name: "ternary in the middle", src: "$(t) ? $(f) ? 1 : 2 : 3", want: 2.0},
		{name: "ternary in arithmetic", src: "($(t) ? 1 : 2) * 10", want: 10.0},
		{name: "string in arithmetic", src: "$(s) + 1", err: "+ wants numbers, got string"},
		{name: "bool in arithmetic", src: "2 * $(t)", err: "* wants numbers, got bool"},
		{name: "string compared", src: "$(s) < $(s2)", err: "< wants numbers, got string"},
		{name: "bool compared", src: "$(t) >= 1", err: ">= wants numbers, got bool"},
		{name: "bool == number", src: "$(t) == 1", err: "== wants two operands of one kind, got bool and number"},
		{name: "string != number", src: "$(s) != $(a)", err: "!= wants two operands of one kind, got string and number"},
		{name: "string && bool", src: "$(s) && $(t)", err: "&& wants bools or numbers, got string"},
		{name: "bool || string", src: "$(f) || $(s)", err: "|| wants bools or numbers, got string"},
		{name: "! on a string", src: "!$(s)", err: "! wants a bool or a number, got string"},
		{name: "- on a bool", src: "-$(t)", err: "- wants a number, got bool"},
		{name: "ternary on a string", src: "$(s) ? 1 : 2", err: "the condition of ?: wants a bool or a number, got string"},
		{name: "division by zero", src: "$(a) / $(z)", err: "division by zero"},
		{name: "division by -0", src: "$(a) / -$(z)", err: "division by zero"},
		{name: "modulo by zero", src: "$(a) % $(zi)", err: "modulo by zero"},
		{name: "overflow", src: "$(big) * 10", err: "1e+308 * 10 is out of range"},
		{name: "overflow of +", src: "$(big) + $(big)", err: "1e+308 + 1e+308 is out of range"},
		{name: "overflow of /", src: "$(big) / 0.1", err: "1e+308 / 0.1 is out of range"},
		{name: "missing", src: "$(humidity) > 50", err: "$(humidity) has no value"},
		{name: "missing current", src: "$$(humidity)", err: "$$(humidity) has no value"},
		{name: "nil", src: "$(nilv) + 1", err: "$(nilv) has no value"},
		{name: "unsupported type", src: "$(bad)", err: "$(bad) has a value of unsupported type []int"},
		{name: "infinity", src: "$(inf) > 1", err: "$(inf) is +Inf, not a finite number"},
		{name: "NaN", src: "$(nan) > 1", err: "$(nan) is NaN, not a finite number"},
		{name: "missing under unary", src: "-$(missing)", err: "$(missing) has no value"},
		{name: "left error first", src: "$(missing) + $(s)", err: "$(missing) has no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustCompileFormula(t, tt.src)
			got, err := f.Eval(formulaEnv)
			if tt.err != "" {
				want := fmt.Sprintf("formula %q: %s", tt.src, tt.err)
				if err == nil || err.Error() != want {
					t.Errorf("Eval(%q) = %v, %v; want error %s", tt.src, got, err, want)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Eval(%q) = %#v, %v; want %#v", tt.src, got, err, tt.want)
			}
		})
	}
}

func TestFormulaEvalNilGet(t *testing.T) {
	f := mustCompileFormula(t, "1 + $(a)")
	_, err := f.Eval(nil)
	if want := `formula "1 + $(a)": $(a) has no value`; err == nil || err.Error() != want {
		t.Errorf("Eval(nil) error = %v, want %s", err, want)
	}
}

func TestFormulaEvalCurrent(t *testing.T) {
	f := mustCompileFormula(t, "$(temp) - $$(temp)")
	offered := func(string) (any, bool) { return 25.0, true }
	current := func(string) (any, bool) { return int64(20), true }
	if got, err := f.EvalCurrent(offered, current); err != nil || got != 5.0 {
		t.Errorf("EvalCurrent = %v, %v; want 5", got, err)
	}
	if got, err := f.Eval(offered); err != nil || got != 0.0 {
		t.Errorf("Eval = %v, %v; want 0", got, err)
	}
	_, err := f.EvalCurrent(offered, nil)
	if want := `formula "$(temp) - $$(temp)": $$(temp) has no value`; err == nil || err.Error() != want {
		t.Errorf("EvalCurrent(offered, nil) error = %v, want %s", err, want)
	}
}

func TestFormulaRefs(t *testing.T) {
	tests := []struct {
		src  string
		want []string
	}{
		{"1 + 2", nil},
		{"$(a)", []string{"a"}},
		{"$(b) + $(a) * $$(b) - $( c_1 ) > $(a)", []string{"a", "b", "c_1"}},
		{"$(x) ? $(y) : !$(z)", []string{"x", "y", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			f := mustCompileFormula(t, tt.src)
			got := f.Refs()
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Refs() = %q, want %q", got, tt.want)
			}
			if len(got) > 0 {
				got[0] = "changed"
				if f.Refs()[0] == "changed" {
					t.Error("Refs() returns the formula's own slice")
				}
			}
		})
	}
}

func TestFormulaConcurrentEval(t *testing.T) {
	f := mustCompileFormula(t, "$(a) > 5 && $(b) < 5 ? $(a) * $(b) : 0")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if got, err := f.Eval(formulaEnv); err != nil || got != 40.0 {
					t.Errorf("Eval = %v, %v; want 40", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzFormula(f *testing.F) {
	for _, s := range []string{
		"1 + 2 * 3", "$(a) / $(b) - $(z) % 2", "-$(neg) * +$(i)", "!$(t) && $(f) || $(z)",
		"$(a) > 5 ? $(s) : $(s2)", "$(f) ? 1 : $(t) ? 2 : 3", "$(t) ? $(f) ? 1 : 2 : 3",
		"($(a) + 1) * (2 - $(b)) / .5e1", "$(s) == $(s2) AND NOT $(t) or $(when) >= 1e12",
		"$$(a) - $(a) = 0", "$(big) * $(big)", "$(missing) || $(t)", "$(a) != 1 <= 2",
		"((((1))))", "--+-!1", "$(nan) + 1", "$(bad) $(a)", "1e", "$( a )", "max(1)", "a & b",
		"(1 < 2) + 3", "1 ? 2", "$(tiny) % 3", "$(i) <= $(b) == $(t)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		g, err := CompileFormula(src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "formula ") {
				t.Fatalf("CompileFormula(%q) error %q lacks the formula prefix", src, err)
			}
			return
		}
		if g.String() != src {
			t.Fatalf("String() = %q, want %q", g.String(), src)
		}
		refs := g.Refs()
		if !slices.IsSorted(refs) || len(slices.Compact(slices.Clone(refs))) != len(refs) {
			t.Fatalf("Refs() = %q: not sorted or not unique", refs)
		}
		again, err := CompileFormula(g.String())
		if err != nil || dumpFormula(again.root) != dumpFormula(g.root) {
			t.Fatalf("String() %q does not compile to the same formula: %v", g.String(), err)
		}
		got, err := g.Eval(formulaEnv)
		if err == nil {
			switch v := got.(type) {
			case float64:
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("Eval(%q) = %v, not finite", src, v)
				}
			case bool, string:
			default:
				t.Fatalf("Eval(%q) = %T %v", src, got, got)
			}
		}
		// The source with as few parentheses as possible means the same.
		text := formatFormula(g.root)
		if len(text) > maxFormulaBytes {
			return
		}
		h, err2 := CompileFormula(text)
		if err2 != nil {
			t.Fatalf("format %q of %q does not compile: %v", text, src, err2)
		}
		if dumpFormula(h.root) != dumpFormula(g.root) {
			t.Fatalf("format %q of %q compiles to %s, want %s", text, src, dumpFormula(h.root), dumpFormula(g.root))
		}
		got2, err2 := h.Eval(formulaEnv)
		if (err == nil) != (err2 == nil) || err == nil && got != got2 {
			t.Fatalf("Eval(%q) = %v, %v; Eval(%q) = %v, %v", src, got, err, text, got2, err2)
		}
	})
}

func ExampleCompileFormula() {
	f, err := CompileFormula("$(temperature) > 30 && $(humidity) > 80")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Refs())

	_, err = CompileFormula("$(temperature) >")
	fmt.Println(err)
	// Output:
	// [humidity temperature]
	// formula "$(temperature) >": at 16: expected an operand
}

func ExampleFormula_Eval() {
	f, _ := CompileFormula("$(humidity) > 80 ? $(temperature) * 1.8 + 32 : 0")
	values := map[string]any{"temperature": 25.0, "humidity": int64(85)}
	get := func(name string) (any, bool) { v, ok := values[name]; return v, ok }
	fmt.Println(f.Eval(get))

	delete(values, "humidity")
	fmt.Println(f.Eval(get))
	// Output:
	// 77 <nil>
	// <nil> formula "$(humidity) > 80 ? $(temperature) * 1.8 + 32 : 0": $(humidity) has no value
}
