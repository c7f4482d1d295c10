package fsstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func assertAssets(t *testing.T, got, want *trust.Assets) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("assets differ:\n got %#v %q %q\nwant %#v %q %q", got, got.SharedSecret, got.EndpointID,
			want, want.SharedSecret, want.EndpointID)
	}
}

func TestOpenTrustStore(t *testing.T) {
	type setup func(t *testing.T, dir string) string // returns the path
	v2File := func(perm os.FileMode) setup {
		return func(t *testing.T, dir string) string {
			return writeProvisioning(t, dir, "p.conf", provisioned(t), trust.FormatV2, perm)
		}
	}
	oracleFile := func(t *testing.T, dir string) string {
		return writeProvisioning(t, dir, "p.conf", provisioned(t), trust.FormatOracle, 0o600)
	}
	rawFile := func(data []byte) setup {
		return func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "p.conf")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	tampered := func(t *testing.T, dir string) string {
		path := v2File(0o600)(t, dir)
		data, _ := os.ReadFile(path)
		i := strings.IndexByte(string(data), '\n') + 10 // a byte of the sealed payload
		data[i] ^= 'A' ^ 'B'
		if data[i] == '\n' || data[i] == '=' {
			t.Fatal("tampering hit a separator")
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		setup   setup
		pass    string
		opts    []TrustOption
		want    string // error text, "$" standing for the path; "" for success
		wantIs  error
		wantFmt trust.Format
	}{
		{name: "v2", setup: v2File(0o600), pass: testPass, wantFmt: trust.FormatV2},
		{name: "oracle", setup: oracleFile, pass: testPass, wantFmt: trust.FormatOracle},
		{name: "0400 is fine", setup: v2File(0o400), pass: testPass, wantFmt: trust.FormatV2},
		{name: "wrong passphrase v2", setup: v2File(0o600), pass: "wrong",
			want: "provisioning file $: wrong passphrase or damaged file", wantIs: trust.ErrPassphrase},
		{name: "wrong passphrase oracle", setup: oracleFile, pass: "wrong",
			want: "provisioning file $: wrong passphrase or damaged file", wantIs: trust.ErrPassphrase},
		{name: "tampered byte", setup: tampered, pass: testPass,
			want: "provisioning file $: wrong passphrase or damaged file", wantIs: trust.ErrPassphrase},
		{name: "world readable", setup: v2File(0o644), pass: testPass,
			want: "provisioning file $: mode 0644 lets group or others access it; want 0600: run chmod 600 $"},
		{name: "group writable", setup: v2File(0o620), pass: testPass,
			want: "provisioning file $: mode 0620 lets group or others access it; want 0600: run chmod 600 $"},
		{name: "world readable allowed", setup: v2File(0o644), pass: testPass,
			opts: []TrustOption{WithInsecurePermissions()}, wantFmt: trust.FormatV2},
		{name: "missing", setup: func(t *testing.T, dir string) string { return filepath.Join(dir, "none.conf") },
			pass: testPass, want: "provisioning file $: file does not exist", wantIs: fs.ErrNotExist},
		{name: "path through a file", setup: func(t *testing.T, dir string) string {
			return filepath.Join(v2File(0o600)(t, dir), "p.conf")
		}, pass: testPass, want: "provisioning file $: not a directory"},
		{name: "device", setup: func(t *testing.T, dir string) string { return os.DevNull },
			pass: testPass, want: "provisioning file $: is a device, want a regular file"},
		{name: "directory", setup: func(t *testing.T, dir string) string { return dir },
			pass: testPass, want: "provisioning file $: is a directory, want a regular file"},
		{name: "empty passphrase", setup: v2File(0o600), pass: "",
			want: "provisioning file $: the passphrase is empty; want the one the file was written with"},
		{name: "not a provisioning file", setup: rawFile([]byte("hello world")), pass: testPass, wantIs: trust.ErrFormat,
			want: `provisioning file $: decode provisioning file: unsupported or malformed provisioning file: it starts with "hello world"; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)`},
		{name: "empty file", setup: rawFile(nil), pass: testPass, wantIs: trust.ErrFormat,
			want: "provisioning file $: decode provisioning file: unsupported or malformed provisioning file: the file is empty"},
		{name: "too large", setup: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "p.conf")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, maxProvisioningFileSize+1); err != nil {
				t.Fatal(err)
			}
			return path
		}, pass: testPass, want: "provisioning file $: 16777217 bytes, more than the 16777216 a provisioning file can have"},
		{name: "iterations too low", setup: v2File(0o600), pass: testPass, opts: []TrustOption{WithKDFIterations(10)},
			want: "provisioning file $: kdf iterations 10: want 1000..10000000"},
		{name: "nil rand", setup: v2File(0o600), pass: testPass, opts: []TrustOption{WithRand(nil)},
			want: "provisioning file $: WithRand(nil): want a random source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			s, err := OpenTrustStore(path, tt.pass, tt.opts...)
			want := strings.ReplaceAll(tt.want, "$", path)
			if tt.want == "" {
				want = "<nil>"
			}
			if got := errText(err); got != want {
				t.Fatalf("OpenTrustStore error:\n got %s\nwant %s", got, want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v does not wrap %v", err, tt.wantIs)
			}
			if err != nil {
				return
			}
			if s.Format() != tt.wantFmt || s.Path() != path {
				t.Fatalf("Format, Path = %v, %s; want %v, %s", s.Format(), s.Path(), tt.wantFmt, path)
			}
			got, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			assertAssets(t, got, provisioned(t))
		})
	}
}

// activate returns a copy of a as after activation.
func activate(t *testing.T, a *trust.Assets, endpoint string) *trust.Assets {
	t.Helper()
	a = cloneAssets(a)
	a.EndpointID = endpoint
	a.PrivateKey, a.PublicKey, _ = keyPair(t, 9)
	return a
}

func TestTrustStoreSave(t *testing.T) {
	for _, f := range []trust.Format{trust.FormatV2, trust.FormatOracle} {
		t.Run(f.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := writeProvisioning(t, dir, "p.conf", provisioned(t), f, 0o600)
			original, _ := os.ReadFile(path)
			s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter), WithRand(&countingReader{}))
			if err != nil {
				t.Fatal(err)
			}
			activated := activate(t, provisioned(t), "0-AEBAAA")
			if err := s.Save(activated); err != nil {
				t.Fatal(err)
			}
			activated.EndpointID = "changed by the caller after Save"
			got, _ := s.Load()
			assertAssets(t, got, activate(t, provisioned(t), "0-AEBAAA"))
			if s.Format() != trust.FormatV2 {
				t.Fatalf("format after save = %v, want v2", s.Format())
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode after save = %04o, want 0600", fi.Mode().Perm())
			}
			data, _ := os.ReadFile(path)
			if !strings.HasPrefix(string(data), "iotnode-trust/2 kdf=pbkdf2-sha256 iter=1000 ") {
				t.Fatalf("saved file starts %q, want a v2 header", data[:40])
			}
			s2, err := OpenTrustStore(path, testPass)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = s2.Load()
			assertAssets(t, got, activate(t, provisioned(t), "0-AEBAAA"))

			// The Oracle original is kept, once, byte for byte.
			bak, err := os.ReadFile(path + OracleBackupSuffix)
			switch {
			case f == trust.FormatV2 && !errors.Is(err, fs.ErrNotExist):
				t.Fatalf("a v2 file got a backup: %v", err)
			case f == trust.FormatOracle && (err != nil || string(bak) != string(original)):
				t.Fatalf("oracle backup = %v, %d bytes; want the %d original bytes", err, len(bak), len(original))
			}
			if f == trust.FormatOracle {
				if fi, _ := os.Stat(path + OracleBackupSuffix); fi.Mode().Perm() != 0o600 {
					t.Fatalf("backup mode = %04o, want 0600", fi.Mode().Perm())
				}
				if err := s.Save(activate(t, provisioned(t), "0-AEBAAB")); err != nil {
					t.Fatal(err)
				}
				if bak2, _ := os.ReadFile(path + OracleBackupSuffix); string(bak2) != string(original) {
					t.Fatal("the second save changed the Oracle backup")
				}
			}
		})
	}
}

func TestTrustStoreOracleBackupKept(t *testing.T) {
	// An existing file where the backup would go is left alone.
	dir := t.TempDir()
	path := writeProvisioning(t, dir, "p.conf", provisioned(t), trust.FormatOracle, 0o600)
	if err := os.WriteFile(path+OracleBackupSuffix, []byte("user's own"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(provisioned(t)); err != nil {
		t.Fatal(err)
	}
	if bak, _ := os.ReadFile(path + OracleBackupSuffix); string(bak) != "user's own" {
		t.Fatalf("existing backup replaced by %q", bak)
	}
}

func TestTrustStoreSaveErrors(t *testing.T) {
	dir := t.TempDir()
	path := writeProvisioning(t, dir, "p.conf", provisioned(t), trust.FormatV2, 0o600)
	original, _ := os.ReadFile(path)
	s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter))
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("simulated crash before rename")
	noClient := provisioned(t)
	noClient.ClientID = ""
	tests := []struct {
		name   string
		assets *trust.Assets
		hook   func(string) error
		want   string
	}{
		{name: "nil assets", assets: nil, want: "save provisioning file $: assets are nil"},
		{name: "invalid assets", assets: noClient,
			want: "save provisioning file $: encode v2 file: " + errText(noClient.Validate())},
		{name: "failure before rename", assets: activate(t, provisioned(t), "x"), hook: func(string) error { return crash },
			want: "save provisioning file $: simulated crash before rename"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.writer.beforeRename = tt.hook
			defer func() { s.writer.beforeRename = nil }()
			err := s.Save(tt.assets)
			if want := strings.ReplaceAll(tt.want, "$", path); errText(err) != want {
				t.Fatalf("Save error:\n got %s\nwant %s", errText(err), want)
			}
			// Nothing changed: file, directory and store.
			if data, _ := os.ReadFile(path); string(data) != string(original) {
				t.Fatal("a failed Save changed the file")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("directory holds %d entries after a failed Save, want 1 (no temporary file left)", len(entries))
			}
			got, _ := s.Load()
			assertAssets(t, got, provisioned(t))
		})
	}
}

func TestTrustStoreStrayTempFile(t *testing.T) {
	// A crash between writing the temporary file and renaming it leaves the
	// temporary file behind: the real file is intact and the stray is ignored.
	dir := t.TempDir()
	path := writeProvisioning(t, dir, "p.conf", provisioned(t), trust.FormatV2, 0o600)
	stray := filepath.Join(dir, ".p.conf"+tempInfix+"123456")
	if err := os.WriteFile(stray, []byte("iotnode-trust/2 half-writ"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Load()
	assertAssets(t, got, provisioned(t))
	if err := s.Save(activate(t, provisioned(t), "ep")); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenTrustStore(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s2.Load()
	assertAssets(t, got, activate(t, provisioned(t), "ep"))
}

func TestTrustStoreConcurrentSaves(t *testing.T) {
	path := writeProvisioning(t, t.TempDir(), "p.conf", provisioned(t), trust.FormatV2, 0o600)
	s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Save(activate(t, provisioned(t), fmt.Sprint("ep-", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	inMemory, _ := s.Load()
	s2, err := OpenTrustStore(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, _ := s2.Load()
	if !strings.HasPrefix(onDisk.EndpointID, "ep-") {
		t.Fatalf("endpoint on disk = %q", onDisk.EndpointID)
	}
	assertAssets(t, onDisk, inMemory) // the last Save wins in memory and on disk alike
}

func TestTrustStoreClose(t *testing.T) {
	path := writeProvisioning(t, t.TempDir(), "p.conf", provisioned(t), trust.FormatV2, 0o600)
	s, err := OpenTrustStore(path, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	_, err = s.Load()
	if want := "provisioning file " + path + ": load: closed"; errText(err) != want || !errors.Is(err, ports.ErrClosed) {
		t.Fatalf("Load after Close = %v, want %s", err, want)
	}
	err = s.Save(provisioned(t))
	if want := "save provisioning file " + path + ": closed"; errText(err) != want || !errors.Is(err, ports.ErrClosed) {
		t.Fatalf("Save after Close = %v, want %s", err, want)
	}
}

func TestTrustStoreConformance(t *testing.T) {
	porttest.TrustStore(t, func(t *testing.T, initial *trust.Assets) ports.TrustStore {
		path := writeProvisioning(t, t.TempDir(), "p.conf", initial, trust.FormatV2, 0o600)
		s, err := OpenTrustStore(path, testPass, WithKDFIterations(testIter))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// What the suite saved must be what a fresh open reads.
			want, err := s.Load()
			if err != nil {
				t.Error(err)
				return
			}
			s2, err := OpenTrustStore(path, testPass)
			if err != nil {
				t.Error(err)
				return
			}
			got, _ := s2.Load()
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after reopen: %#v, want %#v", got, want)
			}
		})
		return s
	})
}
