package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on a formula, so that a hostile or broken policy cannot exhaust the
// device: compiling and evaluating recurse along the nesting.
const (
	maxFormulaBytes = 4096 // bytes of source
	maxFormulaDepth = 64   // nested parentheses, unary operators and ?:
)

// Formula is a compiled policy formula (Oracle's FormulaParser grammar):
// numbers, $(attribute) references, arithmetic, comparisons, && || !, the
// ternary ?: and parentheses. Safe for concurrent use.
//
// The grammar, loosest binding first; binary operators are left-associative:
//
//	formula  = or [ "?" formula ":" formula ]    (right-associative)
//	or       = and { ("||" | OR) and }
//	and      = eq { ("&&" | AND) eq }
//	eq       = rel { ("==" | "=" | "!=") rel }
//	rel      = sum { ("<" | "<=" | ">" | ">=") sum }
//	sum      = prod { ("+" | "-") prod }
//	prod     = unary { ("*" | "/" | "%") unary }
//	unary    = ("-" | "+" | "!" | NOT) unary | primary
//	primary  = number | "$(" name ")" | "$$(" name ")" | "(" formula ")"
//	number   = digits [ "." [ digits ] ] [ exponent ] | "." digits [ exponent ]
//	exponent = ("e" | "E") [ "+" | "-" ] digits
//	name     = (letter | "_") { letter | digit | "_" | "-" }
//
// AND, OR and NOT are keywords in any case, and "=" means "==", as in
// Oracle's parser. Spaces, tabs and newlines between tokens are ignored. A
// formula has no string or boolean literals and no functions: Oracle's
// parser accepts name(args) but its evaluator gives every call NaN, so a
// call, like any other bare name, is a compile error.
//
// $(name) is the attribute's value as the pipeline sees it (the value being
// offered, else the device's last-known one); $$(name) is the device's
// current value only (see EvalCurrent).
//
// Evaluation is typed, where Oracle's computes everything as a double (false
// is 0, true is 1, a missing value NaN). Numbers (int64, float64, time.Time as
// ms since the epoch) are float64. Arithmetic and < <= > >= want numbers;
// == and != compare two numbers, two bools or two strings; && || ! and the
// condition of ?: take bools, or numbers that are true when non-zero (as
// Oracle's && and || do), and give bools; && and || evaluate their right
// side only when the left does not decide. A reference without a value, an
// operand of the wrong kind, a division or modulo by zero and a result
// beyond the float64 range are errors, where Oracle carries on with NaN.
// Operands whose kind is known at compile time (literals, results of
// operators) are checked by CompileFormula.
type Formula struct {
	src  string
	root *fnode
	refs []string // sorted, once each
}

// CompileFormula compiles src. Errors give the position and what was
// expected: `formula "$(a) +": at 6: expected an operand`.
func CompileFormula(src string) (*Formula, error) {
	if len(src) > maxFormulaBytes {
		return nil, fmt.Errorf("formula %s: %d bytes, longer than the limit of %d",
			quoteFormula(src), len(src), maxFormulaBytes)
	}
	root, err := parseFormula(src)
	if err != nil {
		return nil, fmt.Errorf("formula %s: %w", quoteFormula(src), err)
	}
	var refs []string
	root.walk(func(n *fnode) {
		if n.op == fRef || n.op == fCur {
			refs = append(refs, n.name)
		}
	})
	slices.Sort(refs)
	return &Formula{src: src, root: root, refs: slices.Compact(refs)}, nil
}

// Refs returns the attribute names the formula refers to, sorted, once each.
func (f *Formula) Refs() []string {
	return slices.Clone(f.refs)
}

// Eval evaluates the formula; get returns the value of $(name): a float64,
// int64, bool, string or time.Time (ms since the epoch in arithmetic).
// The result is a float64, bool or string. A reference without a value, an
// operand of the wrong kind or a division by zero is an error naming it.
//
// Eval reads $$(name) through get too; EvalCurrent tells them apart.
func (f *Formula) Eval(get func(name string) (any, bool)) (any, error) {
	return f.EvalCurrent(get, get)
}

// EvalCurrent is Eval with a separate source for Oracle's $$(name) form:
// get returns $(name), the value the pipeline is processing (falling back to
// the device's last-known value is the caller's business), and current
// returns $$(name), the device's current value only. A nil function has no
// values.
func (f *Formula) EvalCurrent(get, current func(name string) (any, bool)) (any, error) {
	e := evaluator{get: get, current: current}
	v, err := e.eval(f.root)
	if err != nil {
		return nil, fmt.Errorf("formula %s: %w", quoteFormula(f.src), err)
	}
	switch v.k {
	case fkBool:
		return v.b, nil
	case fkStr:
		return v.s, nil
	}
	return v.f, nil
}

// String returns the source.
func (f *Formula) String() string {
	return f.src
}

// quoteFormula quotes src for an error message, cut short when long.
func quoteFormula(src string) string {
	const max = 100
	if len(src) <= max {
		return strconv.Quote(src)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(src[cut]) {
		cut--
	}
	return strconv.Quote(src[:cut] + "...")
}

// fop is an operator, a kind of leaf, or a token.
type fop uint8

const (
	fEnd    fop = iota // end of the source (tokens only)
	fNum               // number literal
	fRef               // $(name)
	fCur               // $$(name)
	fLParen            // ( (tokens only)
	fRParen            // ) (tokens only)
	fQuest             // ? (tokens only)
	fColon             // : (tokens only)
	fNeg               // unary - (nodes only; the token is fSub)
	fPos               // unary + (nodes only; the token is fAdd)
	fNot
	fMul
	fDiv
	fMod
	fAdd
	fSub
	fLT
	fLE
	fGT
	fGE
	fEQ
	fNE
	fAnd
	fOr
	fCond // c ? x : y (nodes only)
)

func (o fop) String() string {
	switch o {
	case fLParen:
		return "("
	case fRParen:
		return ")"
	case fQuest:
		return "?"
	case fColon:
		return ":"
	case fNeg, fSub:
		return "-"
	case fPos, fAdd:
		return "+"
	case fNot:
		return "!"
	case fMul:
		return "*"
	case fDiv:
		return "/"
	case fMod:
		return "%"
	case fLT:
		return "<"
	case fLE:
		return "<="
	case fGT:
		return ">"
	case fGE:
		return ">="
	case fEQ:
		return "=="
	case fNE:
		return "!="
	case fAnd:
		return "&&"
	case fOr:
		return "||"
	case fCond:
		return "?:"
	}
	return "operand"
}

// prec is the binding strength of an operator node; leaves bind tightest.
func (o fop) prec() int {
	switch o {
	case fCond:
		return 1
	case fOr:
		return 2
	case fAnd:
		return 3
	case fEQ, fNE:
		return 4
	case fLT, fLE, fGT, fGE:
		return 5
	case fAdd, fSub:
		return 6
	case fMul, fDiv, fMod:
		return 7
	case fNeg, fPos, fNot:
		return 8
	}
	return 9
}

func (o fop) binary() bool { return o >= fMul && o <= fOr }

// fnode is a node of the syntax tree.
type fnode struct {
	op   fop
	pos  int     // byte offset of the operator or leaf in the source
	kind fkind   // kind of the result as far as known at compile time
	num  float64 // fNum
	name string  // fRef, fCur
	x    *fnode  // operand; left operand; condition of ?:
	y    *fnode  // right operand; "then" of ?:
	z    *fnode  // "else" of ?:
}

func (n *fnode) walk(fn func(*fnode)) {
	if n == nil {
		return
	}
	fn(n)
	n.x.walk(fn)
	n.y.walk(fn)
	n.z.walk(fn)
}

// ref returns the reference as written: $(name) or $$(name).
func (n *fnode) ref() string {
	if n.op == fCur {
		return "$$(" + n.name + ")"
	}
	return "$(" + n.name + ")"
}

// fkind is the kind of a value; fkAny stands for "not known before
// evaluation".
type fkind uint8

const (
	fkAny fkind = iota
	fkNum
	fkBool
	fkStr
)

func (k fkind) String() string {
	switch k {
	case fkNum:
		return "number"
	case fkBool:
		return "bool"
	case fkStr:
		return "string"
	}
	return "any"
}

func (k fkind) isNum() bool   { return k == fkAny || k == fkNum }
func (k fkind) isTruth() bool { return k == fkAny || k == fkNum || k == fkBool }

// checkKinds reports whether operands of kinds a and b (b is ignored for
// unary operators) suit o. fkAny suits everything, so the parser checks
// what it knows and the evaluator checks the rest.
func checkKinds(o fop, a, b fkind) error {
	switch o {
	case fNeg, fPos:
		if !a.isNum() {
			return fmt.Errorf("%s wants a number, got %s", o, a)
		}
	case fNot:
		if !a.isTruth() {
			return fmt.Errorf("%s wants a bool or a number, got %s", o, a)
		}
	case fCond:
		if !a.isTruth() {
			return fmt.Errorf("the condition of %s wants a bool or a number, got %s", o, a)
		}
	case fMul, fDiv, fMod, fAdd, fSub, fLT, fLE, fGT, fGE:
		for _, k := range [2]fkind{a, b} {
			if !k.isNum() {
				return fmt.Errorf("%s wants numbers, got %s", o, k)
			}
		}
	case fEQ, fNE:
		if a != fkAny && b != fkAny && a != b {
			return fmt.Errorf("%s wants two operands of one kind, got %s and %s", o, a, b)
		}
	case fAnd, fOr:
		for _, k := range [2]fkind{a, b} {
			if !k.isTruth() {
				return fmt.Errorf("%s wants bools or numbers, got %s", o, k)
			}
		}
	}
	return nil
}

// resultKind is the kind of what o gives, as far as known at compile time.
func resultKind(o fop, y, z *fnode) fkind {
	switch o {
	case fNeg, fPos, fMul, fDiv, fMod, fAdd, fSub:
		return fkNum
	case fCond:
		if y.kind == z.kind {
			return y.kind
		}
		return fkAny
	}
	return fkBool
}

// posError is a compile error at a byte offset of the source.
type posError struct {
	pos int
	msg string
}

func (e *posError) Error() string { return fmt.Sprintf("at %d: %s", e.pos, e.msg) }

func errorAt(pos int, format string, args ...any) error {
	return &posError{pos: pos, msg: fmt.Sprintf(format, args...)}
}

// ftoken is a token of the source.
type ftoken struct {
	op   fop // fEnd, fNum, fRef, fCur, punctuation or a binary or unary operator
	pos  int
	num  float64
	name string
}

// flexer splits a source into tokens.
type flexer struct {
	src string
	pos int
}

func digitByte(c byte) bool  { return '0' <= c && c <= '9' }
func letterByte(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' || c == '_' }

// next returns the next token.
func (l *flexer) next() (ftoken, error) {
	for l.pos < len(l.src) && strings.IndexByte(" \t\r\n", l.src[l.pos]) >= 0 {
		l.pos++
	}
	start := l.pos
	if start == len(l.src) {
		return ftoken{op: fEnd, pos: start}, nil
	}
	c := l.src[start]
	switch {
	case digitByte(c) || c == '.':
		return l.numberValue()
	case c == '$':
		return l.ref()
	case letterByte(c):
		return l.word()
	}
	if o, n := punctuation(l.src[start:]); n > 0 {
		l.pos += n
		return ftoken{op: o, pos: start}, nil
	}
	if c == '&' || c == '|' {
		return ftoken{}, errorAt(start, "unexpected %c; did you mean %c%c?", c, c, c)
	}
	r, size := utf8.DecodeRuneInString(l.src[start:])
	if r == utf8.RuneError && size == 1 {
		return ftoken{}, errorAt(start, "unexpected byte %#x: not UTF-8", c)
	}
	return ftoken{}, errorAt(start, "unexpected character %q", r)
}

// punctuation returns the operator or punctuation that s starts with and
// its length, 0 if none.
func punctuation(s string) (fop, int) {
	if len(s) >= 2 {
		switch s[:2] {
		case "<=":
			return fLE, 2
		case ">=":
			return fGE, 2
		case "==":
			return fEQ, 2
		case "!=":
			return fNE, 2
		case "&&":
			return fAnd, 2
		case "||":
			return fOr, 2
		}
	}
	switch s[0] {
	case '(':
		return fLParen, 1
	case ')':
		return fRParen, 1
	case '?':
		return fQuest, 1
	case ':':
		return fColon, 1
	case '+':
		return fAdd, 1
	case '-':
		return fSub, 1
	case '*':
		return fMul, 1
	case '/':
		return fDiv, 1
	case '%':
		return fMod, 1
	case '!':
		return fNot, 1
	case '<':
		return fLT, 1
	case '>':
		return fGT, 1
	case '=':
		return fEQ, 1
	}
	return fEnd, 0
}

// number scans a number literal.
func (l *flexer) numberValue() (ftoken, error) {
	s, start := l.src, l.pos
	i, digits := start, 0
	for ; i < len(s) && digitByte(s[i]); i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && digitByte(s[i]); i++ {
			digits++
		}
	}
	if digits == 0 {
		return ftoken{}, errorAt(i, "expected a digit after .")
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := i
		for i < len(s) && digitByte(s[i]) {
			i++
		}
		if i == exp {
			return ftoken{}, errorAt(i, "expected the digits of the exponent of %s", s[start:i])
		}
	}
	f, err := strconv.ParseFloat(s[start:i], 64)
	if err != nil || math.IsInf(f, 0) {
		return ftoken{}, errorAt(start, "number %s is out of range", s[start:i])
	}
	l.pos = i
	return ftoken{op: fNum, pos: start, num: f}, nil
}

// ref scans $(name) or $$(name); spaces may surround the name.
func (l *flexer) ref() (ftoken, error) {
	s, start := l.src, l.pos
	i, op := start+1, fRef
	if i < len(s) && s[i] == '$' {
		i, op = i+1, fCur
	}
	if i == len(s) || s[i] != '(' {
		return ftoken{}, errorAt(i, "expected ( after %s", s[start:i])
	}
	open := i + 1
	for i++; i < len(s) && (s[i] == ' ' || s[i] == '\t'); i++ {
	}
	name := i
	if i < len(s) && letterByte(s[i]) {
		for i++; i < len(s) && (letterByte(s[i]) || digitByte(s[i]) || s[i] == '-'); i++ {
		}
	}
	if i == name {
		return ftoken{}, errorAt(i, "expected an attribute name after %s", s[start:open])
	}
	tok := ftoken{op: op, pos: start, name: s[name:i]}
	for ; i < len(s) && (s[i] == ' ' || s[i] == '\t'); i++ {
	}
	if i == len(s) || s[i] != ')' {
		return ftoken{}, errorAt(i, "expected ) after the attribute name %q", tok.name)
	}
	l.pos = i + 1
	return tok, nil
}

// word scans a keyword. Any other name is an error: attributes are written
// $(name), and there are no functions.
func (l *flexer) word() (ftoken, error) {
	s, start := l.src, l.pos
	i := start + 1
	for i < len(s) && (letterByte(s[i]) || digitByte(s[i])) {
		i++
	}
	w := s[start:i]
	switch strings.ToLower(w) {
	case "and":
		l.pos = i
		return ftoken{op: fAnd, pos: start}, nil
	case "or":
		l.pos = i
		return ftoken{op: fOr, pos: start}, nil
	case "not":
		l.pos = i
		return ftoken{op: fNot, pos: start}, nil
	}
	if i < len(s) && s[i] == '(' {
		return ftoken{}, errorAt(start, "unknown function %q: formulas have no functions", w)
	}
	return ftoken{}, errorAt(start, "unexpected name %q; an attribute is written $(%s)", w, w)
}

// fparser builds the syntax tree by recursive descent, with precedence
// climbing for the binary operators.
type fparser struct {
	lex   flexer
	tok   ftoken // the current token
	depth int
}

func parseFormula(src string) (*fnode, error) {
	p := &fparser{lex: flexer{src: src}}
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.formula()
	if err != nil {
		return nil, err
	}
	switch p.tok.op {
	case fEnd:
		return n, nil
	case fRParen:
		return nil, errorAt(p.tok.pos, "unexpected ) without (")
	}
	return nil, errorAt(p.tok.pos, "expected an operator, got %s", p.describe())
}

func (p *fparser) advance() error {
	t, err := p.lex.next()
	p.tok = t
	return err
}

// describe names the current token for an error message.
func (p *fparser) describe() string {
	switch p.tok.op {
	case fNum:
		return "a number"
	case fRef, fCur:
		return "an attribute"
	case fEnd:
		return "the end"
	}
	return p.tok.op.String()
}

// enter counts one more level of nesting (a parenthesis, a branch of ?:, a
// unary operator); leave undoes it. The top level is level 0.
func (p *fparser) enter() error {
	p.depth++
	if p.depth > maxFormulaDepth {
		return errorAt(p.tok.pos, "nested deeper than %d levels", maxFormulaDepth)
	}
	return nil
}

func (p *fparser) leave() { p.depth-- }

// node builds an operator node, checking the operands it can.
func (p *fparser) node(o fop, pos int, x, y, z *fnode) (*fnode, error) {
	var err error
	switch {
	case o == fCond:
		err = checkKinds(o, x.kind, fkAny)
	case y == nil:
		err = checkKinds(o, x.kind, fkAny)
	default:
		err = checkKinds(o, x.kind, y.kind)
	}
	if err != nil {
		return nil, &posError{pos: pos, msg: err.Error()}
	}
	return &fnode{op: o, pos: pos, kind: resultKind(o, y, z), x: x, y: y, z: z}, nil
}

// formula parses: or [ "?" formula ":" formula ].
func (p *fparser) formula() (*fnode, error) {
	c, err := p.binary(fOr.prec())
	if err != nil || p.tok.op != fQuest {
		return c, err
	}
	q := p.tok.pos
	x, err := p.nested()
	if err != nil {
		return nil, err
	}
	if p.tok.op != fColon {
		return nil, errorAt(p.tok.pos, "expected : for the ? at %d, got %s", q, p.describe())
	}
	y, err := p.nested()
	if err != nil {
		return nil, err
	}
	return p.node(fCond, q, c, x, y)
}

// nested skips the current token, (, ? or :, and parses the formula that
// follows it, one level of nesting deeper.
func (p *fparser) nested() (*fnode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p.formula()
}

// binary parses a chain of binary operators that bind at least as tightly
// as minPrec.
func (p *fparser) binary(minPrec int) (*fnode, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.tok.op.binary() && p.tok.op.prec() >= minPrec {
		o, pos := p.tok.op, p.tok.pos
		if err := p.advance(); err != nil {
			return nil, err
		}
		y, err := p.binary(o.prec() + 1)
		if err != nil {
			return nil, err
		}
		if x, err = p.node(o, pos, x, y, nil); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// unary parses: ("-" | "+" | "!") unary | primary.
func (p *fparser) unary() (*fnode, error) {
	var o fop
	switch p.tok.op {
	case fSub:
		o = fNeg
	case fAdd:
		o = fPos
	case fNot:
		o = fNot
	default:
		return p.primary()
	}
	pos := p.tok.pos
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	if err := p.advance(); err != nil {
		return nil, err
	}
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	return p.node(o, pos, x, nil, nil)
}

// primary parses: number | $(name) | $$(name) | "(" formula ")".
func (p *fparser) primary() (*fnode, error) {
	t := p.tok
	switch t.op {
	case fNum:
		return &fnode{op: fNum, pos: t.pos, kind: fkNum, num: t.num}, p.advance()
	case fRef, fCur:
		return &fnode{op: t.op, pos: t.pos, name: t.name}, p.advance()
	case fLParen:
		n, err := p.nested()
		if err != nil {
			return nil, err
		}
		if p.tok.op != fRParen {
			return nil, errorAt(p.tok.pos, "expected ) for the ( at %d, got %s", t.pos, p.describe())
		}
		return n, p.advance()
	}
	return nil, errorAt(t.pos, "expected an operand")
}

// fvalue is a value met while evaluating.
type fvalue struct {
	k fkind
	f float64
	b bool
	s string
}

func (v fvalue) truth() bool { return v.b || v.k == fkNum && v.f != 0 }

func numberValue(f float64) fvalue { return fvalue{k: fkNum, f: f} }
func boolValue(b bool) fvalue      { return fvalue{k: fkBool, b: b} }

// evaluator walks the syntax tree.
type evaluator struct {
	get, current func(name string) (any, bool)
}

func (e *evaluator) eval(n *fnode) (fvalue, error) {
	switch n.op {
	case fNum:
		return numberValue(n.num), nil
	case fRef:
		return refValue(n, e.get)
	case fCur:
		return refValue(n, e.current)
	case fNeg, fPos, fNot:
		x, err := e.eval(n.x)
		if err != nil {
			return x, err
		}
		if err := checkKinds(n.op, x.k, fkAny); err != nil {
			return x, err
		}
		switch n.op {
		case fNeg:
			return numberValue(-x.f), nil
		case fNot:
			return boolValue(!x.truth()), nil
		}
		return x, nil
	case fAnd, fOr:
		x, err := e.eval(n.x)
		if err != nil {
			return x, err
		}
		if err := checkKinds(n.op, x.k, fkAny); err != nil {
			return x, err
		}
		if x.truth() == (n.op == fOr) { // false && ..., true || ...
			return boolValue(x.truth()), nil
		}
		y, err := e.eval(n.y)
		if err != nil {
			return y, err
		}
		if err := checkKinds(n.op, fkAny, y.k); err != nil {
			return y, err
		}
		return boolValue(y.truth()), nil
	case fCond:
		c, err := e.eval(n.x)
		if err != nil {
			return c, err
		}
		if err := checkKinds(n.op, c.k, fkAny); err != nil {
			return c, err
		}
		if c.truth() {
			return e.eval(n.y)
		}
		return e.eval(n.z)
	}
	x, err := e.eval(n.x)
	if err != nil {
		return x, err
	}
	y, err := e.eval(n.y)
	if err != nil {
		return y, err
	}
	if err := checkKinds(n.op, x.k, y.k); err != nil {
		return x, err
	}
	return binaryValue(n.op, x, y)
}

// binaryValue applies an arithmetic or comparison operator to operands
// of suitable kinds.
func binaryValue(o fop, x, y fvalue) (fvalue, error) {
	var r float64
	switch o {
	case fEQ:
		return boolValue(x == y), nil
	case fNE:
		return boolValue(x != y), nil
	case fLT:
		return boolValue(x.f < y.f), nil
	case fLE:
		return boolValue(x.f <= y.f), nil
	case fGT:
		return boolValue(x.f > y.f), nil
	case fGE:
		return boolValue(x.f >= y.f), nil
	case fAdd:
		r = x.f + y.f
	case fSub:
		r = x.f - y.f
	case fMul:
		r = x.f * y.f
	case fDiv:
		if y.f == 0 {
			return fvalue{}, errors.New("division by zero")
		}
		r = x.f / y.f
	case fMod:
		if y.f == 0 {
			return fvalue{}, errors.New("modulo by zero")
		}
		r = math.Mod(x.f, y.f)
	}
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return fvalue{}, fmt.Errorf("%s %s %s is out of range", formulaNumber(x.f), o, formulaNumber(y.f))
	}
	return numberValue(r), nil
}

func formulaNumber(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// refValue reads the value of a reference.
func refValue(n *fnode, get func(string) (any, bool)) (fvalue, error) {
	var v any
	ok := false
	if get != nil {
		v, ok = get(n.name)
	}
	if !ok || v == nil {
		return fvalue{}, fmt.Errorf("%s has no value", n.ref())
	}
	switch v := v.(type) {
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return fvalue{}, fmt.Errorf("%s is %v, not a finite number", n.ref(), v)
		}
		return numberValue(v), nil
	case int64:
		return numberValue(float64(v)), nil
	case int:
		return numberValue(float64(v)), nil
	case bool:
		return boolValue(v), nil
	case string:
		return fvalue{k: fkStr, s: v}, nil
	case time.Time:
		return numberValue(float64(v.UnixMilli())), nil
	}
	return fvalue{}, fmt.Errorf("%s has a value of unsupported type %T", n.ref(), v)
}
