package porttest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// MemModelStore is an in-memory ports.ModelStore. The zero value is ready.
type MemModelStore struct {
	mu     sync.Mutex
	models map[string]*model.DeviceModel
}

// Load implements ports.ModelStore.
func (s *MemModelStore) Load(urn string) (*model.DeviceModel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.models[urn]
	if !ok {
		return nil, fmt.Errorf("device model %q: %w", urn, ports.ErrNotFound)
	}
	return m, nil
}

// Save implements ports.ModelStore.
func (s *MemModelStore) Save(m *model.DeviceModel) error {
	if m == nil || m.URN == "" {
		return errors.New("save device model: model has no urn")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.models == nil {
		s.models = map[string]*model.DeviceModel{}
	}
	s.models[m.URN] = m
	return nil
}

// MemTrustStore is an in-memory ports.TrustStore holding a copy of its assets.
type MemTrustStore struct {
	mu     sync.Mutex
	assets *trust.Assets
}

// NewMemTrustStore returns a store that holds a copy of a.
func NewMemTrustStore(a *trust.Assets) *MemTrustStore {
	return &MemTrustStore{assets: cloneAssets(a)}
}

// Load implements ports.TrustStore.
func (s *MemTrustStore) Load() (*trust.Assets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.assets == nil {
		return nil, fmt.Errorf("trusted assets: %w", ports.ErrNotFound)
	}
	return cloneAssets(s.assets), nil
}

// Save implements ports.TrustStore.
func (s *MemTrustStore) Save(a *trust.Assets) error {
	if a == nil {
		return errors.New("save trusted assets: nil assets")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assets = cloneAssets(a)
	return nil
}

func cloneAssets(a *trust.Assets) *trust.Assets {
	if a == nil {
		return nil
	}
	c := *a
	c.SharedSecret = slices.Clone(a.SharedSecret)
	c.PrivateKey = slices.Clone(a.PrivateKey)
	c.PublicKey = slices.Clone(a.PublicKey)
	c.TrustAnchors = make([][]byte, len(a.TrustAnchors))
	for i, d := range a.TrustAnchors {
		c.TrustAnchors[i] = slices.Clone(d)
	}
	c.Devices = make([]trust.ConnectedDevice, len(a.Devices))
	for i, d := range a.Devices {
		c.Devices[i] = trust.ConnectedDevice{HardwareID: d.HardwareID, SharedSecret: slices.Clone(d.SharedSecret)}
	}
	return &c
}

var (
	_ ports.ModelStore = (*MemModelStore)(nil)
	_ ports.TrustStore = (*MemTrustStore)(nil)
)

// ModelStore runs the ports.ModelStore conformance suite. newStore makes a
// fresh, empty store; reopen (may be nil) makes a new store over the same
// backing data, to check persistence.
func ModelStore(t *testing.T, newStore func(t *testing.T) ports.ModelStore, reopen func(t *testing.T, old ports.ModelStore) ports.ModelStore) {
	m := &model.DeviceModel{
		URN:  "urn:com:example:test:thing",
		Name: "Thing",
		Attributes: []model.Attribute{
			{Name: "v", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 10}, Writable: true},
		},
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("test model: %v", err)
	}
	t.Run("missing is ErrNotFound", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Load(m.URN); !errors.Is(err, ports.ErrNotFound) {
			t.Fatalf("Load of a missing model = %v, want ErrNotFound", err)
		}
	})
	t.Run("save then load", func(t *testing.T) {
		s := newStore(t)
		if err := s.Save(m); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(m.URN)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := got.Attribute("v"); got.URN != m.URN || !ok || a.Range == nil || a.Range.Max != 10 {
			t.Fatalf("loaded %+v, want the saved model", got)
		}
		if reopen == nil {
			return
		}
		got, err = reopen(t, s).Load(m.URN)
		if err != nil || got.URN != m.URN {
			t.Fatalf("after reopen: %v, %v", got, err)
		}
	})
}

// TrustStore runs the ports.TrustStore conformance suite over a store that
// initially holds initial.
func TrustStore(t *testing.T, newStore func(t *testing.T, initial *trust.Assets) ports.TrustStore) {
	initial := &trust.Assets{
		ServerURI:    "https://127.0.0.1:8443",
		ClientID:     "dev-1",
		SharedSecret: []byte("s3cret"),
	}
	t.Run("load returns a copy", func(t *testing.T) {
		s := newStore(t, initial)
		a, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if a.ClientID != "dev-1" || string(a.SharedSecret) != "s3cret" {
			t.Fatalf("loaded %+v", a)
		}
		a.SharedSecret[0] = 'X'
		b, _ := s.Load()
		if string(b.SharedSecret) != "s3cret" {
			t.Fatal("changing loaded assets changed the store")
		}
	})
	t.Run("save activation", func(t *testing.T) {
		s := newStore(t, initial)
		a, _ := s.Load()
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a.EndpointID = "ep-1"
		if a.PrivateKey, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			t.Fatal(err)
		}
		if a.PublicKey, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(a); err != nil {
			t.Fatal(err)
		}
		b, err := s.Load()
		if err != nil || b.EndpointID != "ep-1" || !bytes.Equal(b.PrivateKey, a.PrivateKey) || !bytes.Equal(b.PublicKey, a.PublicKey) {
			t.Fatalf("after save: %v, %v", b, err)
		}
	})
}
