package store

import (
	"encoding/json"
	"fmt"
	"sort"
)

// PutModel stores the device model JSON raw under urn (replacing any).
func (t *boltTx) PutModel(urn string, raw []byte) error {
	if urn == "" {
		return fmt.Errorf("put model: empty urn")
	}
	if err := t.b(bucketModels).Put([]byte(urn), raw); err != nil {
		return fmt.Errorf("put model %s: %w", urn, err)
	}
	return nil
}

// Model returns the JSON of the model urn, or an error wrapping ErrNotFound.
func (t *boltTx) Model(urn string) ([]byte, error) {
	v := t.b(bucketModels).Get([]byte(urn))
	if v == nil {
		return nil, fmt.Errorf("device model %q: %w", urn, ErrNotFound)
	}
	return append([]byte(nil), v...), nil
}

// Models returns the JSON of every model, ordered by URN.
func (t *boltTx) Models() ([][]byte, error) {
	var out [][]byte
	err := t.b(bucketModels).ForEach(func(_, v []byte) error {
		out = append(out, append([]byte(nil), v...))
		return nil
	})
	return out, err
}

// Policy is a device policy with its assignment.
type Policy struct {
	ID             string          `json:"id"`
	Description    string          `json:"description,omitempty"`
	Enabled        bool            `json:"enabled"`
	LastModified   int64           `json:"lastModified"`
	Pipelines      json.RawMessage `json:"pipelines"`
	DeviceModelURN string          `json:"deviceModelUrn"`
	// AllDevices assigns the policy to every device of the model; otherwise
	// it applies to the endpoint ids in Devices.
	AllDevices bool     `json:"allDevices,omitempty"`
	Devices    []string `json:"devices,omitempty"`
}

// Applies reports whether p is assigned to the device with endpointID that
// implements the models.
func (p *Policy) Applies(endpointID string, models []string) bool {
	has := false
	for _, m := range models {
		if m == p.DeviceModelURN {
			has = true
		}
	}
	if !has {
		return false
	}
	if p.AllDevices {
		return true
	}
	for _, d := range p.Devices {
		if d == endpointID {
			return true
		}
	}
	return false
}

// PutPolicy inserts or replaces p.
func (t *boltTx) PutPolicy(p *Policy) error {
	if p.ID == "" {
		return fmt.Errorf("put policy: empty id")
	}
	if err := putJSON(t.b(bucketPolicies), []byte(p.ID), p); err != nil {
		return fmt.Errorf("put policy %s: %w", p.ID, err)
	}
	return nil
}

// Policy returns the policy id, or an error wrapping ErrNotFound.
func (t *boltTx) Policy(id string) (*Policy, error) {
	var p Policy
	found, err := getJSON(t.b(bucketPolicies), []byte(id), &p)
	if err != nil {
		return nil, fmt.Errorf("device policy %q: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("device policy %q: %w", id, ErrNotFound)
	}
	return &p, nil
}

// Policies returns every policy, ordered by id.
func (t *boltTx) Policies() ([]*Policy, error) {
	var out []*Policy
	err := t.b(bucketPolicies).ForEach(func(k, v []byte) error {
		var p Policy
		if err := jsonUnmarshal(v, &p); err != nil {
			return fmt.Errorf("device policy %q: %w", k, err)
		}
		out = append(out, &p)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// DeletePolicy deletes the policy id, or returns an error wrapping ErrNotFound.
func (t *boltTx) DeletePolicy(id string) error {
	b := t.b(bucketPolicies)
	if b.Get([]byte(id)) == nil {
		return fmt.Errorf("device policy %q: %w", id, ErrNotFound)
	}
	return b.Delete([]byte(id))
}

// Attributes are the last-known attribute values of one device and model.
type Attributes struct {
	Values  map[string]json.RawMessage `json:"values"`
	Updated int64                      `json:"updated"` // epoch ms
}

func attrKey(endpointID, urn string) []byte { return lp(lp(nil, endpointID), urn) }

// MergeAttributes sets the given values (keeping the others) for the device
// endpointID and model urn.
func (t *boltTx) MergeAttributes(endpointID, urn string, values map[string]json.RawMessage, at int64) error {
	a, err := t.Attributes(endpointID, urn)
	if err != nil {
		return err
	}
	for k, v := range values {
		a.Values[k] = v
	}
	if at > a.Updated {
		a.Updated = at
	}
	if err := putJSON(t.b(bucketAttributes), attrKey(endpointID, urn), a); err != nil {
		return fmt.Errorf("merge attributes of %s %s: %w", endpointID, urn, err)
	}
	return nil
}

// Attributes returns the last-known values (an empty set when none is known).
func (t *boltTx) Attributes(endpointID, urn string) (*Attributes, error) {
	a := &Attributes{}
	if _, err := getJSON(t.b(bucketAttributes), attrKey(endpointID, urn), a); err != nil {
		return nil, fmt.Errorf("attributes of %s %s: %w", endpointID, urn, err)
	}
	if a.Values == nil {
		a.Values = map[string]json.RawMessage{}
	}
	return a, nil
}

// Object is the metadata of a stored object; its bytes live in File.
type Object struct {
	Path            string            `json:"path"` // "<endpointId>/<name>"
	File            string            `json:"file"` // file name under the objects directory
	ContentType     string            `json:"contentType"`
	ContentEncoding string            `json:"contentEncoding,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"` // canonical header name -> value
	Length          int64             `json:"length"`
	Modified        int64             `json:"modified"` // epoch ms
}

// PutObject inserts or replaces the metadata of o.
func (t *boltTx) PutObject(o *Object) error {
	if err := putJSON(t.b(bucketObjects), []byte(o.Path), o); err != nil {
		return fmt.Errorf("put object %s: %w", o.Path, err)
	}
	return nil
}

// Object returns the metadata of the object at path, or an error wrapping ErrNotFound.
func (t *boltTx) Object(path string) (*Object, error) {
	var o Object
	found, err := getJSON(t.b(bucketObjects), []byte(path), &o)
	if err != nil {
		return nil, fmt.Errorf("object %q: %w", path, err)
	}
	if !found {
		return nil, fmt.Errorf("object %q: %w", path, ErrNotFound)
	}
	return &o, nil
}
