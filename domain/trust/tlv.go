package trust

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Record tags shared by both formats (doc.go, "The payload").
const (
	tagServerURI       = 1
	tagClientID        = 2
	tagSharedSecret    = 3
	tagEndpointID      = 4
	tagTrustAnchor     = 5
	tagPrivateKey      = 6
	tagPublicKey       = 7
	tagConnectedDevice = 8
)

var tagNames = [...]string{
	tagServerURI:       "server URI",
	tagClientID:        "client ID",
	tagSharedSecret:    "shared secret",
	tagEndpointID:      "endpoint ID",
	tagTrustAnchor:     "trust anchor",
	tagPrivateKey:      "private key",
	tagPublicKey:       "public key",
	tagConnectedDevice: "connected device",
}

// appendRecord appends one record. The caller has checked len(v) <= maxValue
// (Validate does).
func appendRecord(dst []byte, tag byte, v []byte) []byte {
	dst = append(dst, tag)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}

// marshalRecords returns the payload of valid assets a, in the write order
// 1, 2, 3, (4), (5...), (6), (7), (8...).
func marshalRecords(a *Assets) []byte {
	var p []byte
	p = appendRecord(p, tagServerURI, []byte(a.ServerURI))
	p = appendRecord(p, tagClientID, []byte(a.ClientID))
	p = appendRecord(p, tagSharedSecret, a.SharedSecret)
	if a.EndpointID != "" {
		p = appendRecord(p, tagEndpointID, []byte(a.EndpointID))
	}
	for _, der := range a.TrustAnchors {
		p = appendRecord(p, tagTrustAnchor, der)
	}
	if len(a.PrivateKey) > 0 {
		p = appendRecord(p, tagPrivateKey, a.PrivateKey)
	}
	if len(a.PublicKey) > 0 {
		p = appendRecord(p, tagPublicKey, a.PublicKey)
	}
	for _, d := range a.Devices {
		var nested []byte
		nested = appendRecord(nested, tagClientID, []byte(d.HardwareID))
		nested = appendRecord(nested, tagSharedSecret, d.SharedSecret)
		p = appendRecord(p, tagConnectedDevice, nested)
	}
	return p
}

// nextRecord splits the record at the start of p (which is at offset off of
// the payload, for messages) from the rest.
func nextRecord(p []byte, off int) (tag byte, value, rest []byte, err error) {
	if len(p) < 3 {
		return 0, nil, nil, fmt.Errorf("record at offset %d: %d bytes left, need at least a 3-byte tag and length", off, len(p))
	}
	tag, n := p[0], int(binary.BigEndian.Uint16(p[1:3]))
	if n > len(p)-3 {
		return 0, nil, nil, fmt.Errorf("record at offset %d (tag %d): length %d runs past the end (%d bytes left)", off, tag, n, len(p)-3)
	}
	return tag, p[3 : 3+n], p[3+n:], nil
}

// unmarshalRecords parses a payload into fresh Assets (no slice aliases p).
// It enforces the record rules of doc.go but not Validate.
func unmarshalRecords(p []byte) (*Assets, error) {
	a := &Assets{}
	var seen [tagConnectedDevice + 1]bool
	for off := 0; len(p) > 0; {
		tag, v, rest, err := nextRecord(p, off)
		if err != nil {
			return nil, err
		}
		switch tag {
		case tagServerURI, tagClientID, tagSharedSecret, tagEndpointID, tagPrivateKey, tagPublicKey:
			if seen[tag] {
				return nil, fmt.Errorf("record at offset %d: tag %d (%s) repeats", off, tag, tagNames[tag])
			}
		}
		if int(tag) < len(seen) {
			seen[tag] = true
		}
		switch tag {
		case tagServerURI:
			a.ServerURI = string(v)
		case tagClientID:
			a.ClientID = string(v)
		case tagSharedSecret:
			a.SharedSecret = bytes.Clone(v)
		case tagEndpointID:
			a.EndpointID = string(v)
		case tagTrustAnchor:
			a.TrustAnchors = append(a.TrustAnchors, bytes.Clone(v))
		case tagPrivateKey:
			a.PrivateKey = bytes.Clone(v)
		case tagPublicKey:
			a.PublicKey = bytes.Clone(v)
		case tagConnectedDevice:
			d, err := unmarshalDevice(v)
			if err != nil {
				return nil, fmt.Errorf("record at offset %d (connected device): %w", off, err)
			}
			a.Devices = append(a.Devices, d)
		default:
			// Unknown tags are skipped, as Oracle's Java reader does.
		}
		off += len(p) - len(rest)
		p = rest
	}
	for _, tag := range []byte{tagServerURI, tagClientID, tagSharedSecret} {
		if !seen[tag] {
			return nil, fmt.Errorf("tag %d (%s) is missing", tag, tagNames[tag])
		}
	}
	return a, nil
}

// unmarshalDevice parses the value of a tag 8 record: exactly one tag 2
// record followed by one tag 3 record.
func unmarshalDevice(v []byte) (ConnectedDevice, error) {
	tag1, id, rest, err := nextRecord(v, 0)
	if err != nil {
		return ConnectedDevice{}, err
	}
	tag2, secret, rest, err := nextRecord(rest, len(v)-len(rest))
	if err != nil {
		return ConnectedDevice{}, err
	}
	if tag1 != tagClientID || tag2 != tagSharedSecret || len(rest) != 0 {
		return ConnectedDevice{}, fmt.Errorf("expected one tag %d (hardware ID) and one tag %d (shared secret) record, nothing else",
			tagClientID, tagSharedSecret)
	}
	return ConnectedDevice{HardwareID: string(id), SharedSecret: bytes.Clone(secret)}, nil
}
