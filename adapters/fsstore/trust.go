package fsstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// maxProvisioningFileSize bounds what OpenTrustStore reads: a gateway with
// tens of thousands of devices fits with room to spare; anything larger is
// not a provisioning file.
const maxProvisioningFileSize = 16 << 20

// OracleBackupSuffix names the copy of an Oracle-format provisioning file
// that the first Save keeps before it upgrades the file to format v2:
// "<path>.oracle.bak".
const OracleBackupSuffix = ".oracle.bak"

// TrustStore is a ports.TrustStore over one provisioning file (the
// trusted-assets store): it decodes the file once, in OpenTrustStore, and
// rewrites it on Save.
//
// Formats: it reads format v2 and Oracle's unified format and always writes
// format v2. An Oracle-format file is therefore upgraded to v2 by the first
// Save (after activation, usually); Oracle's own client libraries cannot
// read it from then on. Before that first Save replaces it, the original
// file is kept as "<path>.oracle.bak" (OracleBackupSuffix), mode 0600,
// unless a file of that name exists already, which is left alone. The
// backup holds exactly what the original held (the pre-activation
// credentials, in the weak Oracle encryption), so keeping it exposes
// nothing new; delete it once the device no longer needs Oracle's
// libraries.
//
// The passphrase: Save must encrypt again, so the store keeps the
// passphrase in memory from OpenTrustStore until Close, and nowhere else
// (never on disk, never in an error or a log).
//
// The file is read once: changes made to it by another process after
// OpenTrustStore are not seen, and are overwritten by Save. All methods are
// safe for concurrent use; concurrent Saves are serialised, and each
// replaces the file atomically (temporary file in the same directory, fsync,
// rename, fsync of the directory) with mode 0600. A temporary file left by a
// crash (".<name>.tmp-<random>") is never read and does not affect the real
// file.
type TrustStore struct {
	path   string
	opts   trustOptions
	writer atomicWriter

	mu         sync.Mutex
	passphrase string
	assets     *trust.Assets // nil after Close
	format     trust.Format
}

// TrustOption adjusts OpenTrustStore.
type TrustOption func(*trustOptions)

type trustOptions struct {
	insecurePerms bool
	iterations    int
	rand          io.Reader
}

// WithInsecurePermissions lets OpenTrustStore read a provisioning file that
// group or others may access. Without it such a file is refused, because
// the passphrase is often weak and an Oracle-format file has no MAC.
func WithInsecurePermissions() TrustOption {
	return func(o *trustOptions) { o.insecurePerms = true }
}

// WithKDFIterations sets the PBKDF2 iteration count Save writes
// (trust.MinIterations..trust.MaxIterations; default
// trust.DefaultIterations). Low counts are for tests only.
func WithKDFIterations(n int) TrustOption {
	return func(o *trustOptions) { o.iterations = n }
}

// WithRand sets the source of the salt and nonce Save writes (default
// crypto/rand.Reader). For tests only.
func WithRand(r io.Reader) TrustOption {
	return func(o *trustOptions) { o.rand = r }
}

// OpenTrustStore opens the provisioning file at path with passphrase: it
// checks the file's permissions, reads and decrypts it.
//
// Errors, each naming the file:
//   - the file does not exist: wraps fs.ErrNotExist;
//   - group or others may access it (mode & 0077 != 0) and
//     WithInsecurePermissions was not given: says which mode and how to fix
//     it (not checked on Windows, which has no such mode bits);
//   - wrong passphrase or tampered file: "provisioning file <path>: wrong
//     passphrase or damaged file", wrapping trust.ErrPassphrase, and nothing
//     more specific;
//   - not a provisioning file, or one this version cannot read: wraps
//     trust.ErrFormat and says what was found;
//   - an empty passphrase or an option out of range.
func OpenTrustStore(path, passphrase string, opts ...TrustOption) (*TrustStore, error) {
	s := &TrustStore{path: path, opts: trustOptions{iterations: trust.DefaultIterations, rand: rand.Reader}}
	for _, o := range opts {
		o(&s.opts)
	}
	if s.opts.iterations < trust.MinIterations || s.opts.iterations > trust.MaxIterations {
		return nil, fmt.Errorf("provisioning file %s: kdf iterations %d: want %d..%d",
			path, s.opts.iterations, trust.MinIterations, trust.MaxIterations)
	}
	if s.opts.rand == nil {
		return nil, fmt.Errorf("provisioning file %s: WithRand(nil): want a random source", path)
	}
	if passphrase == "" {
		return nil, fmt.Errorf("provisioning file %s: the passphrase is empty; want the one the file was written with", path)
	}
	data, err := s.read()
	if err != nil {
		return nil, err
	}
	a, format, err := trust.Decode(data, passphrase)
	switch {
	case errors.Is(err, trust.ErrPassphrase):
		// Never say more: which check failed would only help an attacker.
		return nil, fmt.Errorf("provisioning file %s: %w", path, trust.ErrPassphrase)
	case err != nil:
		return nil, fmt.Errorf("provisioning file %s: %w", path, err)
	}
	s.passphrase, s.assets, s.format = passphrase, a, format
	return s, nil
}

// read checks the file's type, mode and size, and returns its bytes. The
// checks come before opening, so that a named pipe cannot block the open.
func (s *TrustStore) read() ([]byte, error) {
	fi, err := os.Stat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("provisioning file %s: %w", s.path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("provisioning file %s: %w", s.path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("provisioning file %s: is a %s, want a regular file", s.path, describeMode(fi.Mode()))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && !s.opts.insecurePerms && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("provisioning file %s: mode %04o lets group or others access it; want 0600: run chmod 600 %s",
			s.path, perm, s.path)
	}
	if fi.Size() > maxProvisioningFileSize {
		return nil, fmt.Errorf("provisioning file %s: %d bytes, more than the %d a provisioning file can have",
			s.path, fi.Size(), maxProvisioningFileSize)
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("provisioning file %s: %w", s.path, unwrapPath(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProvisioningFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("provisioning file %s: %w", s.path, unwrapPath(err))
	}
	if len(data) > maxProvisioningFileSize {
		return nil, fmt.Errorf("provisioning file %s: more than the %d bytes a provisioning file can have",
			s.path, maxProvisioningFileSize)
	}
	return data, nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// Path returns the provisioning file's path.
func (s *TrustStore) Path() string { return s.path }

// Format returns the format the file has now: the one it was opened in
// until the first successful Save, trust.FormatV2 after.
func (s *TrustStore) Format() trust.Format {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.format
}

// Load implements ports.TrustStore: it returns a copy of the assets, which
// the caller may keep and change. After Close it returns an error wrapping
// ports.ErrClosed.
func (s *TrustStore) Load() (*trust.Assets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assets == nil {
		return nil, fmt.Errorf("provisioning file %s: load: %w", s.path, ports.ErrClosed)
	}
	return cloneAssets(s.assets), nil
}

// Save implements ports.TrustStore: it encrypts a (format v2) with the
// passphrase the store was opened with and atomically replaces the file,
// mode 0600, returning after the data and the directory entry were synced.
// It keeps a copy of a. The first Save of an Oracle-format file first keeps
// the original as "<path>.oracle.bak" (see TrustStore).
//
// Errors name the file: invalid assets (what trust.Assets.Validate says),
// the store being closed (wraps ports.ErrClosed), or the I/O step that
// failed. On error the file and the store's assets are unchanged.
func (s *TrustStore) Save(a *trust.Assets) error {
	if a == nil {
		return fmt.Errorf("save provisioning file %s: assets are nil", s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assets == nil {
		return fmt.Errorf("save provisioning file %s: %w", s.path, ports.ErrClosed)
	}
	data, err := trust.EncodeV2(a, s.passphrase, s.opts.rand, trust.WithIterations(s.opts.iterations))
	if err != nil {
		return fmt.Errorf("save provisioning file %s: %w", s.path, err)
	}
	if s.format == trust.FormatOracle {
		if err := s.backupOracle(); err != nil {
			return fmt.Errorf("save provisioning file %s: keep the Oracle-format original: %w", s.path, err)
		}
	}
	if err := s.writer.write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("save provisioning file %s: %w", s.path, err)
	}
	s.assets, s.format = cloneAssets(a), trust.FormatV2
	return nil
}

// backupOracle keeps the current file as path+OracleBackupSuffix unless that
// exists. It hard-links when it can (no copy of the secrets passes through
// memory) and copies atomically otherwise.
func (s *TrustStore) backupOracle() error {
	bak := s.path + OracleBackupSuffix
	if _, err := os.Lstat(bak); err == nil {
		return nil // an earlier backup (or the user's file): keep it
	}
	if err := os.Link(s.path, bak); err == nil {
		if err := os.Chmod(bak, 0o600); err != nil && runtime.GOOS != "windows" {
			return fmt.Errorf("chmod %s: %w", bak, unwrapPath(err))
		}
		return syncDir(filepath.Dir(s.path))
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.path, unwrapPath(err))
	}
	return s.writer.write(bak, data, 0o600)
}

// Close forgets the passphrase and the assets; later Loads and Saves fail
// with ports.ErrClosed. It never fails and may be called more than once.
func (s *TrustStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passphrase, s.assets = "", nil
	return nil
}

// cloneAssets returns a deep copy of a.
func cloneAssets(a *trust.Assets) *trust.Assets {
	c := *a
	c.SharedSecret = slices.Clone(a.SharedSecret)
	c.PrivateKey = slices.Clone(a.PrivateKey)
	c.PublicKey = slices.Clone(a.PublicKey)
	if a.TrustAnchors != nil {
		c.TrustAnchors = make([][]byte, len(a.TrustAnchors))
		for i, d := range a.TrustAnchors {
			c.TrustAnchors[i] = slices.Clone(d)
		}
	}
	if a.Devices != nil {
		c.Devices = make([]trust.ConnectedDevice, len(a.Devices))
		for i, d := range a.Devices {
			c.Devices[i] = trust.ConnectedDevice{HardwareID: d.HardwareID, SharedSecret: slices.Clone(d.SharedSecret)}
		}
	}
	return &c
}

var _ ports.TrustStore = (*TrustStore)(nil)
