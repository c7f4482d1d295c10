package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// PureAllowList names third-party import paths that domain/ may use: pure,
// I/O-free libraries. Empty on purpose; adding one needs a reason in a comment.
var PureAllowList = []string{}

// ioPackages are standard packages the pure domain must not import: they do
// I/O, logging or touch the process. time is allowed (for types); reading the
// clock is a review matter.
var ioPackages = []string{
	"os", "os/exec", "os/signal", "os/user", "net", "net/http", "net/rpc", "net/smtp", "net/mail",
	"log", "log/slog", "log/syslog", "syscall", "database/sql", "io/ioutil", "plugin", "embed",
	"runtime/debug", "runtime/pprof", "unsafe", "crypto/rand",
}

// File is one Go file's imports, by module-relative package directory.
type File struct {
	Dir     string // module-relative, slash-separated ("domain/model")
	Name    string
	Test    bool
	Imports []string
}

// Violation is one broken rule.
type Violation struct {
	File   string
	Import string
	Rule   string
}

func (v Violation) String() string { return fmt.Sprintf("%s imports %q: %s", v.File, v.Import, v.Rule) }

// ReadModule parses the imports of every Go file below root (the directory of
// go.mod), skipping testdata, hidden and vendor directories.
func ReadModule(root string) (module string, files []File, err error) {
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", nil, err
	}
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			module = f[1]
		}
	}
	if module == "" {
		return "", nil, fmt.Errorf("%s: no module line", filepath.Join(root, "go.mod"))
	}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if p != root && (n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		file := File{Dir: filepath.ToSlash(rel), Name: d.Name(), Test: strings.HasSuffix(p, "_test.go")}
		for _, imp := range f.Imports {
			s, _ := strconv.Unquote(imp.Path.Value)
			file.Imports = append(file.Imports, s)
		}
		files = append(files, file)
		return nil
	})
	return module, files, err
}

func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

func under(dir, prefix string) bool { return dir == prefix || strings.HasPrefix(dir, prefix+"/") }

// Check applies the dependency rule to files of module and returns every
// violation, sorted.
func Check(module string, files []File) []Violation {
	var out []Violation
	for _, f := range files {
		where := path.Join(f.Dir, f.Name)
		for _, imp := range f.Imports {
			bad := func(rule string) { out = append(out, Violation{File: where, Import: imp, Rule: rule}) }
			local, isLocal := strings.CutPrefix(imp, module+"/")
			if !isLocal && imp == module {
				local, isLocal = "", true
			}
			if strings.HasPrefix(imp, "github.com/knadh/koanf") && !under(f.Dir, "cmd") {
				bad("koanf is used only under cmd/")
			}
			if isLocal && (under(local, "cmd") || under(local, "integration")) && !under(f.Dir, local) {
				bad("nothing imports cmd/ or integration/")
			}
			switch {
			case under(f.Dir, "domain"):
				switch {
				case isLocal && !under(local, "domain"):
					bad("domain imports only the standard library and domain/")
				case !isLocal && !isStd(imp) && !contains(PureAllowList, imp):
					bad("domain imports only the standard library (and the pure allow-list)")
				case !f.Test && contains(ioPackages, imp):
					bad("domain does no I/O and no logging")
				}
			case f.Dir == "ports":
				if !isStd(imp) && !(isLocal && under(local, "domain")) {
					bad("ports imports only domain")
				}
			case under(f.Dir, "ports"):
				if !isStd(imp) && !(isLocal && (under(local, "domain") || under(local, "ports"))) {
					bad("ports/porttest imports only domain and ports")
				}
			case under(f.Dir, "device"):
				if isLocal && !(under(local, "domain") || under(local, "ports") || under(local, "device")) && !f.Test {
					bad("device imports only domain and ports")
				}
			case under(f.Dir, "adapters"):
				own := strings.Join(strings.SplitN(f.Dir, "/", 3)[:2], "/")
				if isLocal && (under(local, "adapters") && !under(local, own)) {
					bad("no adapter imports another adapter")
				}
				if isLocal && !f.Test && (under(local, "device") || under(local, "cloud")) {
					bad("adapters import only domain and ports")
				}
			case under(f.Dir, "plugins"):
				if isLocal && !(under(local, "domain") || under(local, "ports") || under(local, "plugins")) {
					bad("plugins import only domain, ports and plugins/")
				}
			case under(f.Dir, "cloud"):
				if isLocal && (under(local, "device") || under(local, "adapters") || under(local, "plugins")) && !f.Test {
					bad("cloud may reuse domain but not device, adapters or plugins")
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
