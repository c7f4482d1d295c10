package archtest

import (
	"strings"
	"testing"
)

const mod = "github.com/iotnode/iotnode"

func TestDependencyRule(t *testing.T) {
	module, files, err := ReadModule("../..")
	if err != nil {
		t.Fatal(err)
	}
	if module != mod {
		t.Fatalf("module = %q", module)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	for _, v := range Check(module, files) {
		t.Error(v)
	}
}

// TestCheck proves each rule fires on a synthetic module, so a broken rule
// cannot pass silently.
func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		file File
		want string // "" = allowed
	}{
		{"domain imports net/http", File{Dir: "domain/model", Name: "m.go", Imports: []string{"net/http"}},
			`domain/model/m.go imports "net/http": domain does no I/O and no logging`},
		{"domain imports os", File{Dir: "domain/trust", Name: "t.go", Imports: []string{"os"}},
			`domain/trust/t.go imports "os": domain does no I/O and no logging`},
		{"domain test may read testdata", File{Dir: "domain/model", Name: "m_test.go", Test: true, Imports: []string{"os"}}, ""},
		{"domain imports a third-party module", File{Dir: "domain/model", Name: "m.go", Imports: []string{"github.com/expr-lang/expr"}},
			`domain/model/m.go imports "github.com/expr-lang/expr": domain imports only the standard library (and the pure allow-list)`},
		{"domain imports ports", File{Dir: "domain/virtual", Name: "v.go", Imports: []string{mod + "/ports"}},
			`domain/virtual/v.go imports "` + mod + `/ports": domain imports only the standard library and domain/`},
		{"domain imports domain", File{Dir: "domain/virtual", Name: "v.go", Imports: []string{mod + "/domain/model", "time"}}, ""},
		{"ports imports an adapter", File{Dir: "ports", Name: "p.go", Imports: []string{mod + "/adapters/http"}},
			`ports/p.go imports "` + mod + `/adapters/http": ports imports only domain`},
		{"ports imports resty", File{Dir: "ports", Name: "p.go", Imports: []string{"github.com/go-resty/resty/v2"}},
			`ports/p.go imports "github.com/go-resty/resty/v2": ports imports only domain`},
		{"porttest imports ports", File{Dir: "ports/porttest", Name: "p.go", Imports: []string{mod + "/ports", "testing"}}, ""},
		{"device imports an adapter", File{Dir: "device", Name: "d.go", Imports: []string{mod + "/adapters/http"}},
			`device/d.go imports "` + mod + `/adapters/http": device imports only domain and ports`},
		{"adapter imports adapter", File{Dir: "adapters/http", Name: "h.go", Imports: []string{mod + "/adapters/fsstore"}},
			`adapters/http/h.go imports "` + mod + `/adapters/fsstore": no adapter imports another adapter`},
		{"adapter imports its own subpackage", File{Dir: "adapters/http", Name: "h.go", Imports: []string{mod + "/adapters/http/jwt"}}, ""},
		{"adapter imports device", File{Dir: "adapters/mqtt", Name: "m.go", Imports: []string{mod + "/device"}},
			`adapters/mqtt/m.go imports "` + mod + `/device": adapters import only domain and ports`},
		{"koanf outside cmd", File{Dir: "device", Name: "d.go", Imports: []string{"github.com/knadh/koanf/v2"}},
			`device/d.go imports "github.com/knadh/koanf/v2": koanf is used only under cmd/`},
		{"koanf in cmd", File{Dir: "cmd/iotnode", Name: "c.go", Imports: []string{"github.com/knadh/koanf/v2"}}, ""},
		{"cloud imports device", File{Dir: "cloud", Name: "c.go", Imports: []string{mod + "/device"}},
			`cloud/c.go imports "` + mod + `/device": cloud may reuse domain but not device, adapters or plugins`},
		{"anything imports cmd", File{Dir: "device", Name: "d.go", Imports: []string{mod + "/cmd/iotnode"}},
			`device/d.go imports "` + mod + `/cmd/iotnode": device imports only domain and ports`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Check(mod, []File{tt.file}) {
				got = append(got, v.String())
			}
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("violations = %q, want none", got)
				}
				return
			}
			if !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Fatalf("violations = %q, want %q", got, tt.want)
			}
		})
	}
}
