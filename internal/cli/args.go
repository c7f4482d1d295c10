package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ArgParser parses a command's arguments with the flags anywhere among the
// positional arguments (flags may follow them), with one or two dashes, as
// "--name=value" or "--name value"; "--" ends the flags. The zero value is
// ready to use. An ArgParser is not changed by Parse, so one may be shared.
type ArgParser struct {
	// NumbersArePositional makes an argument that is a number, such as -5
	// or -1.5, positional rather than a flag.
	NumbersArePositional bool
	// DurationExample completes "expected a duration such as ..." in the
	// error for a bad duration value, as in "30s or 5m".
	DurationExample string
	// Refuse, when set, sees every flag name before it is looked up; an
	// error it returns ends parsing and is returned as is.
	Refuse func(name string) error
}

// Parse sets the flags of fs from args and returns the positional
// arguments. It returns flag.ErrHelp for -h or --help, the error of Refuse,
// or an error that says which flag is wrong and what was expected.
func (p ArgParser) Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(pos, args[i+1:]...), nil
		}
		if len(a) < 2 || a[0] != '-' || (p.NumbersArePositional && isNumber(a)) {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = k, v, true
		}
		if name == "h" || name == "help" {
			return nil, flag.ErrHelp
		}
		if p.Refuse != nil {
			if err := p.Refuse(name); err != nil {
				return nil, err
			}
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, fmt.Errorf("unknown flag --%s", name)
		}
		if !hasValue {
			if IsBoolFlag(f) {
				value = "true"
			} else {
				if i+1 >= len(args) {
					return nil, fmt.Errorf("flag --%s needs a value", name)
				}
				i++
				value = args[i]
			}
		}
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("flag --%s: invalid value %q: %s", name, value, p.expected(f))
		}
	}
	return pos, nil
}

// expected says what a flag's value should look like.
func (p ArgParser) expected(f *flag.Flag) string {
	g, _ := f.Value.(flag.Getter)
	if g == nil {
		return "not accepted"
	}
	switch g.Get().(type) {
	case bool:
		return "expected true or false"
	case int, int64, uint, uint64:
		return "expected a whole number"
	case float64:
		return "expected a number"
	case time.Duration:
		return "expected a duration such as " + p.DurationExample
	}
	return "not accepted"
}

// IsBoolFlag reports whether f takes no value (a boolean flag).
func IsBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}
