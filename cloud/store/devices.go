package store

import (
	"fmt"
	"sort"
)

// Device is a registered device. ID is the activation id; EndpointID is set
// at activation (for an indirectly connected device both are equal).
type Device struct {
	ID           string            `json:"id"`
	HardwareID   string            `json:"hardwareId"`
	Type         string            `json:"type"`
	State        string            `json:"state"`
	EndpointID   string            `json:"endpointId,omitempty"`
	SharedSecret string            `json:"sharedSecret,omitempty"`
	PublicKey    []byte            `json:"publicKey,omitempty"` // DER SubjectPublicKeyInfo registered at activation
	Gateway      string            `json:"gateway,omitempty"`   // endpoint id of the gateway of an indirect device
	Models       []string          `json:"deviceModels,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Created      int64             `json:"created"`
	ActivatedAt  int64             `json:"activationTime,omitempty"`
	LastSeen     int64             `json:"lastSeen,omitempty"`
}

// PutDevice inserts or replaces d (keyed by d.ID) and keeps the hardware-id
// and endpoint-id indexes. It returns an error wrapping ErrExists when another
// device already has d's hardware id or endpoint id.
func (t *boltTx) PutDevice(d *Device) error {
	if d.ID == "" {
		return fmt.Errorf("put device: empty id")
	}
	devs, hw, ep := t.b(bucketDevices), t.b(bucketDevHW), t.b(bucketDevEP)
	if d.HardwareID != "" {
		if other := hw.Get([]byte(d.HardwareID)); other != nil && string(other) != d.ID {
			return fmt.Errorf("put device %s: hardware id %q is registered to device %s: %w", d.ID, d.HardwareID, other, ErrExists)
		}
	}
	if d.EndpointID != "" {
		if other := ep.Get([]byte(d.EndpointID)); other != nil && string(other) != d.ID {
			return fmt.Errorf("put device %s: endpoint id %q belongs to device %s: %w", d.ID, d.EndpointID, other, ErrExists)
		}
	}
	var old Device
	found, err := getJSON(devs, []byte(d.ID), &old)
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.ID, err)
	}
	if found {
		if old.HardwareID != "" && old.HardwareID != d.HardwareID {
			if err := hw.Delete([]byte(old.HardwareID)); err != nil {
				return err
			}
		}
		if old.EndpointID != "" && old.EndpointID != d.EndpointID {
			if err := ep.Delete([]byte(old.EndpointID)); err != nil {
				return err
			}
		}
	}
	if d.HardwareID != "" {
		if err := hw.Put([]byte(d.HardwareID), []byte(d.ID)); err != nil {
			return err
		}
	}
	if d.EndpointID != "" {
		if err := ep.Put([]byte(d.EndpointID), []byte(d.ID)); err != nil {
			return err
		}
	}
	if err := putJSON(devs, []byte(d.ID), d); err != nil {
		return fmt.Errorf("put device %s: %w", d.ID, err)
	}
	return nil
}

// Device returns the device whose activation id or endpoint id is id, or an
// error wrapping ErrNotFound.
func (t *boltTx) Device(id string) (*Device, error) {
	key := []byte(id)
	if v := t.b(bucketDevices).Get(key); v == nil {
		if alt := t.b(bucketDevEP).Get(key); alt != nil {
			key = alt
		}
	}
	var d Device
	found, err := getJSON(t.b(bucketDevices), key, &d)
	if err != nil {
		return nil, fmt.Errorf("device %q: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return &d, nil
}

// DeviceByHardwareID returns the device registered with hardware id hw, or an
// error wrapping ErrNotFound.
func (t *boltTx) DeviceByHardwareID(hw string) (*Device, error) {
	id := t.b(bucketDevHW).Get([]byte(hw))
	if id == nil {
		return nil, fmt.Errorf("device with hardware id %q: %w", hw, ErrNotFound)
	}
	return t.Device(string(id))
}

// Devices returns every device, ordered by id.
func (t *boltTx) Devices() ([]*Device, error) {
	var out []*Device
	err := t.b(bucketDevices).ForEach(func(k, v []byte) error {
		var d Device
		if err := jsonUnmarshal(v, &d); err != nil {
			return fmt.Errorf("device %q: %w", k, err)
		}
		out = append(out, &d)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}
