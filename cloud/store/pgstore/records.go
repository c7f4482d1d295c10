package pgstore

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotnode/iotnode/cloud/store"
	"github.com/jackc/pgx/v5"
)

// nullable maps "" to NULL, so that unique columns allow many empty values.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// decode unmarshals a stored JSON record; key names it in the error, as the
// bbolt store does.
func decode(data []byte, key string, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		if key == "" {
			return fmt.Errorf("corrupt record: %w", err)
		}
		return fmt.Errorf("corrupt record %q: %w", key, err)
	}
	return nil
}

// PutDevice inserts or replaces d and keeps the hardware-id and endpoint-id
// indexes unique (errors wrap store.ErrExists).
func (t *Tx) PutDevice(d *store.Device) error {
	if d.ID == "" {
		return fmt.Errorf("put device: empty id")
	}
	// Checked first (rather than left to the unique constraints) for the
	// error texts, and because a failed statement aborts the transaction.
	check := func(col, val, format string) error {
		if val == "" {
			return nil
		}
		var other []byte
		err := t.queryRow(`SELECT id FROM {s}.devices WHERE `+col+` = $1 AND id <> $2`, []byte(val), []byte(d.ID)).Scan(&other)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("put device %s: %w", d.ID, err)
		}
		return fmt.Errorf(format, d.ID, val, other, store.ErrExists)
	}
	if err := check("hardware_id", d.HardwareID, "put device %s: hardware id %q is registered to device %s: %w"); err != nil {
		return err
	}
	if err := check("endpoint_id", d.EndpointID, "put device %s: endpoint id %q belongs to device %s: %w"); err != nil {
		return err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.ID, err)
	}
	_, err = t.exec(`INSERT INTO {s}.devices (id, hardware_id, endpoint_id, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET hardware_id = EXCLUDED.hardware_id, endpoint_id = EXCLUDED.endpoint_id, data = EXCLUDED.data`,
		[]byte(d.ID), nullable(d.HardwareID), nullable(d.EndpointID), data)
	if err != nil {
		return fmt.Errorf("put device %s: %w", d.ID, err)
	}
	return nil
}

// Device returns the device whose activation id or endpoint id is id, or an
// error wrapping store.ErrNotFound.
func (t *Tx) Device(id string) (*store.Device, error) {
	var key, data []byte
	err := t.queryRow(`SELECT id, data FROM {s}.devices WHERE id = $1 OR endpoint_id = $1 ORDER BY id = $1 DESC LIMIT 1`, []byte(id)).
		Scan(&key, &data)
	return device(err, key, data, fmt.Sprintf("device %q", id), fmt.Sprintf("device %q", id))
}

// device decodes a device row; what names the lookup in a not-found error,
// corrupt in a decoding error.
func device(err error, key, data []byte, what, corrupt string) (*store.Device, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var d store.Device
	if err := decode(data, string(key), &d); err != nil {
		return nil, fmt.Errorf("%s: %w", corrupt, err)
	}
	return &d, nil
}

// DeviceByHardwareID returns the device registered with hardware id hw, or
// an error wrapping store.ErrNotFound.
func (t *Tx) DeviceByHardwareID(hw string) (*store.Device, error) {
	var key, data []byte
	err := t.queryRow(`SELECT id, data FROM {s}.devices WHERE hardware_id = $1`, []byte(hw)).Scan(&key, &data)
	return device(err, key, data, fmt.Sprintf("device with hardware id %q", hw), fmt.Sprintf("device %q", key))
}

// Devices returns every device, ordered by id.
func (t *Tx) Devices() ([]*store.Device, error) {
	var out []*store.Device
	err := t.each(`SELECT id, data FROM {s}.devices ORDER BY id`, func(k, v []byte) error {
		var d store.Device
		if err := decode(v, "", &d); err != nil {
			return fmt.Errorf("device %q: %w", k, err)
		}
		out = append(out, &d)
		return nil
	})
	return out, err
}

// each calls fn with the two bytea columns of each row of q, stopping at the
// first error.
func (t *Tx) each(q string, fn func(k, v []byte) error, args ...any) error {
	rows, err := t.query(q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return rows.Err()
}

// put upserts the bytea value of key in a table (key column k, value column data).
func (t *Tx) put(table, k string, key string, data []byte) error {
	_, err := t.exec(`INSERT INTO {s}.`+table+` (`+k+`, data) VALUES ($1, $2) ON CONFLICT (`+k+`) DO UPDATE SET data = EXCLUDED.data`,
		[]byte(key), data)
	return err
}

// get returns the value of key in a table, and whether there is one.
func (t *Tx) get(table, k string, key string) ([]byte, bool, error) {
	var data []byte
	err := t.queryRow(`SELECT data FROM {s}.`+table+` WHERE `+k+` = $1`, []byte(key)).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if data == nil {
		data = []byte{}
	}
	return data, err == nil, err
}

// PutModel stores the device model JSON raw under urn (replacing any).
func (t *Tx) PutModel(urn string, raw []byte) error {
	if urn == "" {
		return fmt.Errorf("put model: empty urn")
	}
	if raw == nil {
		raw = []byte{}
	}
	if err := t.put("models", "urn", urn, raw); err != nil {
		return fmt.Errorf("put model %s: %w", urn, err)
	}
	return nil
}

// Model returns the JSON of the model urn, or an error wrapping store.ErrNotFound.
func (t *Tx) Model(urn string) ([]byte, error) {
	v, found, err := t.get("models", "urn", urn)
	if err != nil {
		return nil, fmt.Errorf("device model %q: %w", urn, err)
	}
	if !found {
		return nil, fmt.Errorf("device model %q: %w", urn, store.ErrNotFound)
	}
	return v, nil
}

// Models returns the JSON of every model, ordered by URN.
func (t *Tx) Models() ([][]byte, error) {
	var out [][]byte
	err := t.each(`SELECT urn, data FROM {s}.models ORDER BY urn`, func(_, v []byte) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// PutPolicy inserts or replaces p.
func (t *Tx) PutPolicy(p *store.Policy) error {
	if p.ID == "" {
		return fmt.Errorf("put policy: empty id")
	}
	data, err := json.Marshal(p)
	if err == nil {
		err = t.put("policies", "id", p.ID, data)
	}
	if err != nil {
		return fmt.Errorf("put policy %s: %w", p.ID, err)
	}
	return nil
}

// Policy returns the policy id, or an error wrapping store.ErrNotFound.
func (t *Tx) Policy(id string) (*store.Policy, error) {
	v, found, err := t.get("policies", "id", id)
	if err != nil {
		return nil, fmt.Errorf("device policy %q: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("device policy %q: %w", id, store.ErrNotFound)
	}
	var p store.Policy
	if err := decode(v, id, &p); err != nil {
		return nil, fmt.Errorf("device policy %q: %w", id, err)
	}
	return &p, nil
}

// Policies returns every policy, ordered by id.
func (t *Tx) Policies() ([]*store.Policy, error) {
	var out []*store.Policy
	err := t.each(`SELECT id, data FROM {s}.policies ORDER BY id`, func(k, v []byte) error {
		var p store.Policy
		if err := decode(v, "", &p); err != nil {
			return fmt.Errorf("device policy %q: %w", k, err)
		}
		out = append(out, &p)
		return nil
	})
	return out, err
}

// DeletePolicy deletes the policy id, or returns an error wrapping store.ErrNotFound.
func (t *Tx) DeletePolicy(id string) error {
	tag, err := t.exec(`DELETE FROM {s}.policies WHERE id = $1`, []byte(id))
	if err != nil {
		return fmt.Errorf("delete device policy %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("device policy %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// MergeAttributes sets the given values (keeping the others) for the device
// endpointID and model urn.
func (t *Tx) MergeAttributes(endpointID, urn string, values map[string]json.RawMessage, at int64) error {
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
	data, err := json.Marshal(a)
	if err == nil {
		_, err = t.exec(`INSERT INTO {s}.attributes (endpoint_id, urn, data) VALUES ($1, $2, $3)
			ON CONFLICT (endpoint_id, urn) DO UPDATE SET data = EXCLUDED.data`, []byte(endpointID), []byte(urn), data)
	}
	if err != nil {
		return fmt.Errorf("merge attributes of %s %s: %w", endpointID, urn, err)
	}
	return nil
}

// Attributes returns the last-known values (an empty set when none is known).
func (t *Tx) Attributes(endpointID, urn string) (*store.Attributes, error) {
	var data []byte
	err := t.queryRow(`SELECT data FROM {s}.attributes WHERE endpoint_id = $1 AND urn = $2`, []byte(endpointID), []byte(urn)).Scan(&data)
	a := &store.Attributes{}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("attributes of %s %s: %w", endpointID, urn, err)
	default:
		if err := decode(data, endpointID+" "+urn, a); err != nil {
			return nil, fmt.Errorf("attributes of %s %s: %w", endpointID, urn, err)
		}
	}
	if a.Values == nil {
		a.Values = map[string]json.RawMessage{}
	}
	return a, nil
}

// PutObject inserts or replaces the metadata of o.
func (t *Tx) PutObject(o *store.Object) error {
	data, err := json.Marshal(o)
	if err == nil {
		err = t.put("objects", "path", o.Path, data)
	}
	if err != nil {
		return fmt.Errorf("put object %s: %w", o.Path, err)
	}
	return nil
}

// Object returns the metadata of the object at path, or an error wrapping
// store.ErrNotFound.
func (t *Tx) Object(path string) (*store.Object, error) {
	v, found, err := t.get("objects", "path", path)
	if err != nil {
		return nil, fmt.Errorf("object %q: %w", path, err)
	}
	if !found {
		return nil, fmt.Errorf("object %q: %w", path, store.ErrNotFound)
	}
	var o store.Object
	if err := decode(v, path, &o); err != nil {
		return nil, fmt.Errorf("object %q: %w", path, err)
	}
	return &o, nil
}
