package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		p       ArgParser
		args    []string
		wantPos string
		wantErr string
	}{
		{name: "flags after positionals", args: []string{"a", "--n", "3", "b", "-v"}, wantPos: "[a b] n=3 v=true d=0s"},
		{name: "equals form", args: []string{"--d=2s", "x"}, wantPos: "[x] n=0 v=false d=2s"},
		{name: "double dash ends flags", args: []string{"--v", "--", "--n", "-1"}, wantPos: "[--n -1] n=0 v=true d=0s"},
		{name: "negative number positional", p: ArgParser{NumbersArePositional: true}, args: []string{"-5", "--n", "1"}, wantPos: "[-5] n=1 v=false d=0s"},
		{name: "negative number is a flag by default", args: []string{"-5"}, wantErr: "unknown flag --5"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "unknown flag --nope"},
		{name: "missing value", args: []string{"--n"}, wantErr: "flag --n needs a value"},
		{name: "bad number", args: []string{"--n", "x"}, wantErr: `flag --n: invalid value "x": expected a whole number`},
		{name: "bad duration", p: ArgParser{DurationExample: "30s or 5m"}, args: []string{"--d", "soon"}, wantErr: `flag --d: invalid value "soon": expected a duration such as 30s or 5m`},
		{name: "refused", p: ArgParser{Refuse: func(n string) error {
			if n == "v" {
				return errors.New("no -v here")
			}
			return nil
		}}, args: []string{"-v"}, wantErr: "no -v here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			n := fs.Int("n", 0, "")
			v := fs.Bool("v", false, "")
			d := fs.Duration("d", 0, "")
			pos, err := tt.p.Parse(fs, tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%v n=%d v=%v d=%v", pos, *n, *v, *d); got != tt.wantPos {
				t.Fatalf("got %s, want %s", got, tt.wantPos)
			}
		})
	}
	if _, err := (ArgParser{}).Parse(flag.NewFlagSet("t", flag.ContinueOnError), []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help = %v, want flag.ErrHelp", err)
	}
}
