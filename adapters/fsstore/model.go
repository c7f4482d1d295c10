package fsstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// ModelStore is a ports.ModelStore over a directory with one file per
// device model, named as Oracle's Java and Python libraries name them
// (ModelFileName), holding the model's JSON as the cloud sent it. A
// directory shared with those libraries works both ways.
//
// Save replaces a file atomically (temporary file, fsync, rename, fsync of
// the directory), mode 0600, so a crash leaves the old or the new model.
// Concurrent Saves of one model: the last rename wins, each file whole.
// Load reads the file each time (no cache), so a model written by another
// process is seen. Safe for concurrent use.
type ModelStore struct {
	dir    string
	writer atomicWriter
}

// NewModelStore returns a store over dir, creating it (mode 0700, parents
// too) when it does not exist. It fails when dir cannot be created or is
// not a directory.
func NewModelStore(dir string) (*ModelStore, error) {
	if dir == "" {
		return nil, errors.New("device model store: directory is empty; want a path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device model store %s: %w", dir, unwrapPath(err))
	}
	return &ModelStore{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *ModelStore) Dir() string { return s.dir }

// ModelFileName returns the file name of the model urn:
// "dm-" + URLEncoder.encode(urn, "UTF-8") + ".json", exactly as Java's
// java.net.URLEncoder encodes: ASCII letters, digits and ". - * _" stay,
// a space becomes "+", every other byte of the UTF-8 form becomes "%XY"
// with upper-case hex. (Go's url.QueryEscape differs on "*", which it
// escapes, and "~", which it keeps.) Since "/" and "\" are escaped, the
// name never leaves the directory.
func ModelFileName(urn string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len("dm-") + len(urn) + len(".json"))
	b.WriteString("dm-")
	for i := 0; i < len(urn); i++ {
		c := urn[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '-', c == '*', c == '_':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	b.WriteString(".json")
	return b.String()
}

// Load implements ports.ModelStore. It returns an error wrapping
// ports.ErrNotFound when the store has no file for urn, and an error
// naming the file (not wrapping ErrNotFound) when the file cannot be read,
// is not a valid device model, or holds a model with another URN.
func (s *ModelStore) Load(urn string) (*model.DeviceModel, error) {
	path := filepath.Join(s.dir, ModelFileName(urn))
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("device model %q: no file %s: %w", urn, path, ports.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("device model %q: read %s: %w", urn, path, unwrapPath(err))
	}
	m, err := model.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("device model %q: file %s is corrupt: %w", urn, path, err)
	}
	if m.URN != urn {
		return nil, fmt.Errorf("device model %q: file %s is corrupt: it holds model %q", urn, path, m.URN)
	}
	return m, nil
}

// Save implements ports.ModelStore: it writes m.Raw, or m's MarshalJSON
// when Raw is nil, to the model's file. It fails for a nil model or one
// without a URN, and names the file when the write fails.
func (s *ModelStore) Save(m *model.DeviceModel) error {
	if m == nil || m.URN == "" {
		return errors.New("save device model: the model has no urn")
	}
	data := m.Raw
	if data == nil {
		var err error
		if data, err = m.MarshalJSON(); err != nil {
			return fmt.Errorf("save device model %q: %w", m.URN, err)
		}
	}
	path := filepath.Join(s.dir, ModelFileName(m.URN))
	if err := s.writer.write(path, data, 0o600); err != nil {
		return fmt.Errorf("save device model %q to %s: %w", m.URN, path, err)
	}
	return nil
}

var _ ports.ModelStore = (*ModelStore)(nil)
