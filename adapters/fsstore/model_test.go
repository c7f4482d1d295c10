package fsstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestModelFileName(t *testing.T) {
	tests := []struct {
		name, urn, want string
	}{
		{"oracle urn", "urn:com:oracle:iot:device:humidity_sensor", "dm-urn%3Acom%3Aoracle%3Aiot%3Adevice%3Ahumidity_sensor.json"},
		{"java keeps star and escapes tilde", "a*b~c", "dm-a*b%7Ec.json"},
		{"unreserved kept", "AZaz09.-_", "dm-AZaz09.-_.json"},
		{"space is plus, plus is escaped", "a b+c", "dm-a+b%2Bc.json"},
		{"separators escaped", "../x/y\\z", "dm-..%2Fx%2Fy%5Cz.json"},
		{"utf-8 bytes, upper-case hex", "é€", "dm-%C3%A9%E2%82%AC.json"},
		{"percent and controls", "%\x00\x7f", "dm-%25%00%7F.json"},
		{"empty", "", "dm-.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ModelFileName(tt.urn); got != tt.want {
				t.Fatalf("ModelFileName(%q) = %q, want %q", tt.urn, got, tt.want)
			}
		})
	}
}

// testModel reads a device model from the module's testdata.
func testModel(t *testing.T, name string) *model.DeviceModel {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "devicemodels", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModelStoreSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "models", "nested")
	s, err := NewModelStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 || s.Dir() != dir {
		t.Fatalf("store directory: %v, %v", fi, err)
	}
	for _, name := range []string{"humidity_sensor.json", "light_switch.json", "temperature_sensor.json"} {
		t.Run(name, func(t *testing.T) {
			m := testModel(t, name)
			if err := s.Save(m); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, ModelFileName(m.URN))
			data, err := os.ReadFile(path)
			if err != nil || string(data) != string(m.Raw) {
				t.Fatalf("file %s: %v; want the raw JSON byte for byte", path, err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode = %04o, want 0600", fi.Mode().Perm())
			}
			got, err := s.Load(m.URN)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Raw) != string(m.Raw) || len(got.Attributes) != len(m.Attributes) {
				t.Fatalf("loaded %s, want %s", got.Raw, m.Raw)
			}
		})
	}
	t.Run("built by hand", func(t *testing.T) {
		m := testModel(t, "light_switch.json")
		m.Raw = nil
		if err := s.Save(m); err != nil {
			t.Fatal(err)
		}
		want, _ := m.MarshalJSON()
		data, _ := os.ReadFile(filepath.Join(dir, ModelFileName(m.URN)))
		if string(data) != string(want) {
			t.Fatalf("file = %s, want MarshalJSON's %s", data, want)
		}
		if _, err := s.Load(m.URN); err != nil {
			t.Fatal(err)
		}
	})
}

func TestModelStoreErrors(t *testing.T) {
	const urn = "urn:com:oracle:iot:device:humidity_sensor"
	tests := []struct {
		name     string
		file     string // content of urn's file; "-" for none
		urn      string
		want     string // "$" stands for the file's path
		notFound bool
	}{
		{name: "missing", file: "-", urn: urn, notFound: true,
			want: `device model "` + urn + `": no file $: not found`},
		{name: "not json", file: "{\"urn\": ", urn: urn,
			want: `device model "` + urn + `": file $ is corrupt: device model: invalid JSON: unexpected end of input`},
		{name: "empty", file: "", urn: urn,
			want: `device model "` + urn + `": file $ is corrupt: device model: empty input: want a JSON object`},
		{name: "other model", file: `{"urn":"urn:x","name":"X"}`, urn: urn,
			want: `device model "` + urn + `": file $ is corrupt: it holds model "urn:x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewModelStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(s.Dir(), ModelFileName(tt.urn))
			if tt.file != "-" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err = s.Load(tt.urn)
			if want := strings.ReplaceAll(tt.want, "$", path); errText(err) != want {
				t.Fatalf("Load error:\n got %s\nwant %s", errText(err), want)
			}
			if errors.Is(err, ports.ErrNotFound) != tt.notFound {
				t.Fatalf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}
		})
	}
}

func TestModelStoreSaveErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := NewModelStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	long := &model.DeviceModel{URN: "urn:" + strings.Repeat("x", 300), Name: "long", Raw: []byte("{}")}
	tests := []struct {
		name string
		m    *model.DeviceModel
		want string
	}{
		{"nil", nil, "save device model: the model has no urn"},
		{"no urn", &model.DeviceModel{Name: "x"}, "save device model: the model has no urn"},
		{"name too long", long, `save device model "` + long.URN + `" to ` + filepath.Join(dir, ModelFileName(long.URN)) +
			": create temporary file in " + dir + ": file name too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(s.Save(tt.m)); got != tt.want {
				t.Fatalf("Save error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestNewModelStoreErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, dir, want string }{
		{"empty", "", "device model store: directory is empty; want a path"},
		{"a file", file, "device model store " + file + ": not a directory"},
		{"below a file", filepath.Join(file, "x"), "device model store " + filepath.Join(file, "x") + ": not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewModelStore(tt.dir); errText(err) != tt.want {
				t.Fatalf("NewModelStore error:\n got %s\nwant %s", errText(err), tt.want)
			}
		})
	}
}

func TestModelStoreConformance(t *testing.T) {
	porttest.ModelStore(t,
		func(t *testing.T) ports.ModelStore {
			s, err := NewModelStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		func(t *testing.T, old ports.ModelStore) ports.ModelStore {
			s, err := NewModelStore(old.(*ModelStore).Dir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
}
