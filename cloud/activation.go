package cloud

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/domain/model"
)

// Activation policy (protocol.md §2a). hashAlgorithm is Java's Signature name.
const (
	activationKeyType  = "RSA"
	activationHashAlg  = "SHA256withRSA"
	activationKeySize  = 2048
	secretHashAlg      = "HmacSHA256"
	publicKeyFormat    = "X.509"
	maxActivationModel = 256
)

type activationPolicy struct {
	KeyType       string `json:"keyType"`
	HashAlgorithm string `json:"hashAlgorithm"`
	KeySize       int    `json:"keySize"`
}

func alreadyActivated(d *store.Device) error {
	return errorf(http.StatusUnauthorized, "device %q is already activated (endpoint %q)", d.ID, d.EndpointID)
}

// handleActivationPolicy is GET activation/policy (§2a). 401 once activated
// (Java reads that as "already activated").
func (s *Server) handleActivationPolicy(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	if d.State == api.StateActivated {
		return alreadyActivated(d)
	}
	writeJSON(w, http.StatusOK, activationPolicy{KeyType: activationKeyType, HashAlgorithm: activationHashAlg, KeySize: activationKeySize})
	return nil
}

type directActivation struct {
	CertificationRequestInfo struct {
		Subject              string `json:"subject"`
		SubjectPublicKeyInfo struct {
			Algorithm           string `json:"algorithm"`
			PublicKey           string `json:"publicKey"`
			Format              string `json:"format"`
			SecretHashAlgorithm string `json:"secretHashAlgorithm"`
		} `json:"subjectPublicKeyInfo"`
		Attributes json.RawMessage `json:"attributes"`
	} `json:"certificationRequestInfo"`
	SignatureAlgorithm string   `json:"signatureAlgorithm"`
	Signature          string   `json:"signature"`
	DeviceModels       []string `json:"deviceModels"`
}

type activationResponse struct {
	EndpointID     string  `json:"endpointId"`
	EndpointState  string  `json:"endpointState"`
	ActivationTime int64   `json:"activationTime"`
	Certificate    *string `json:"certificate,omitempty"`
}

// decodeBase64 accepts standard base64 with or without padding and line breaks.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// createDraft reads the createDraft query parameter (default true, as Oracle's server).
func createDraft(r *http.Request) (bool, error) {
	switch v := r.URL.Query().Get("createDraft"); v {
	case "", "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, errorf(http.StatusBadRequest, "query parameter createDraft is %q, expected true or false", v)
	}
}

// resolveModels dedupes urns (a set, in first-seen order) and checks that
// each is known: a system capability, a stored model, or (draft) a new empty
// draft model created now.
func (s *Server) resolveModels(tx store.Tx, urns []string, draft bool) ([]string, error) {
	if len(urns) > maxActivationModel {
		return nil, errorf(http.StatusBadRequest, "deviceModels has %d entries, expected at most %d", len(urns), maxActivationModel)
	}
	var out []string
	seen := map[string]bool{}
	for _, urn := range urns {
		if seen[urn] {
			continue
		}
		seen[urn] = true
		if urn == "" {
			return nil, errorf(http.StatusBadRequest, "deviceModels: empty URN")
		}
		out = append(out, urn)
		if model.IsSystemURN(urn) {
			continue
		}
		_, err := tx.Model(urn)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if !draft {
			return nil, errorf(http.StatusBadRequest, "deviceModels: unknown device model %q, expected a model registered with POST %s/deviceModels (or activate with createDraft=true)", urn, api.Root)
		}
		raw, _ := json.Marshal(map[string]any{
			"urn": urn, "name": urn, "description": "draft created at activation",
			"system": false, "draft": true, "attributes": []any{}, "actions": []any{}, "formats": []any{},
		})
		if err := tx.PutModel(urn, raw); err != nil {
			return nil, err
		}
		s.log.Info("draft device model created", "urn", urn)
	}
	return out, nil
}

// orderedAttributes returns the string entries of a JSON object in document
// order (Java signs them as key='value' lines in its map's order, which is
// also the order it writes them in).
func orderedAttributes(raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("expected a JSON object")
	}
	var out [][2]string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		sv, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("attribute %q is not a string", k)
		}
		out = append(out, [2]string{k, sv})
	}
	return out, nil
}

// handleDirectActivation is POST activation/direct (§2b).
func (s *Server) handleDirectActivation(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	if d.State == api.StateActivated {
		return alreadyActivated(d)
	}
	draft, err := createDraft(r)
	if err != nil {
		return err
	}
	var body directActivation
	if err := decodeBody(w, r, "direct activation", &body, false); err != nil {
		return err
	}
	cri := &body.CertificationRequestInfo
	spki := &cri.SubjectPublicKeyInfo
	bad := func(format string, args ...any) error {
		s.log.Warn("direct activation rejected", "activation_id", d.ID, "reason", fmt.Sprintf(format, args...))
		return errorf(http.StatusBadRequest, "direct activation: "+format, args...)
	}
	if cri.Subject != d.ID {
		return bad("certificationRequestInfo.subject is %q, expected the activation id %q", cri.Subject, d.ID)
	}
	if spki.Algorithm != activationKeyType {
		return bad("subjectPublicKeyInfo.algorithm is %q, expected %q", spki.Algorithm, activationKeyType)
	}
	if spki.Format != publicKeyFormat {
		return bad("subjectPublicKeyInfo.format is %q, expected %q", spki.Format, publicKeyFormat)
	}
	if !strings.EqualFold(spki.SecretHashAlgorithm, secretHashAlg) {
		return bad("subjectPublicKeyInfo.secretHashAlgorithm is %q, expected %q", spki.SecretHashAlgorithm, secretHashAlg)
	}
	if !strings.EqualFold(body.SignatureAlgorithm, activationHashAlg) {
		return bad("signatureAlgorithm is %q, expected %q", body.SignatureAlgorithm, activationHashAlg)
	}
	der, err := decodeBase64(spki.PublicKey)
	if err != nil {
		return bad("subjectPublicKeyInfo.publicKey is not base64: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return bad("subjectPublicKeyInfo.publicKey is not a DER X.509 SubjectPublicKeyInfo")
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return bad("subjectPublicKeyInfo.publicKey is a %T, expected an RSA key", pub)
	}
	if rk.N.BitLen() < activationKeySize {
		return bad("subjectPublicKeyInfo.publicKey has %d bits, expected at least %d", rk.N.BitLen(), activationKeySize)
	}
	attrs, err := orderedAttributes(cri.Attributes)
	if err != nil {
		return bad("certificationRequestInfo.attributes: %v", err)
	}
	sig, err := decodeBase64(body.Signature)
	if err != nil {
		return bad("signature is not base64: %v", err)
	}
	var in bytes.Buffer
	fmt.Fprintf(&in, "%s\n%s\n%s\n%s\n", cri.Subject, spki.Algorithm, spki.Format, spki.SecretHashAlgorithm)
	for _, kv := range attrs {
		fmt.Fprintf(&in, "%s='%s'\n", kv[0], kv[1])
	}
	mac := hmac.New(sha256.New, []byte(d.SharedSecret))
	mac.Write([]byte(d.ID))
	in.Write(mac.Sum(nil))
	in.Write(der)
	digest := sha256.Sum256(in.Bytes())
	if err := rsa.VerifyPKCS1v15(rk, crypto.SHA256, digest[:], sig); err != nil {
		return bad("signature does not verify: expected SHA256withRSA by the submitted key over the subject, key info lines, HMAC-SHA256(shared secret, activation id) and the key")
	}
	now := s.now().UnixMilli()
	var out *store.Device
	err = s.store.Update(func(tx store.Tx) error {
		cur, err := tx.Device(d.ID)
		if err != nil {
			return err
		}
		if cur.State == api.StateActivated {
			return alreadyActivated(cur)
		}
		models, err := s.resolveModels(tx, body.DeviceModels, draft)
		if err != nil {
			return err
		}
		cur.State, cur.EndpointID, cur.PublicKey, cur.Models, cur.ActivatedAt = api.StateActivated, newID(), der, models, now
		out = cur
		return tx.PutDevice(cur)
	})
	if err != nil {
		return err
	}
	s.log.Info("device activated", "activation_id", out.ID, "endpoint_id", out.EndpointID, "type", out.Type)
	empty := ""
	writeJSON(w, http.StatusOK, activationResponse{EndpointID: out.EndpointID, EndpointState: api.StateActivated, ActivationTime: now, Certificate: &empty})
	return nil
}

// handleIndirectActivation is POST activation/indirect/device (§2c), called by
// a gateway for one of its indirectly connected devices.
func (s *Server) handleIndirectActivation(w http.ResponseWriter, r *http.Request, gw *store.Device) error {
	if gw.Type != api.DeviceTypeGateway && !contains(gw.Models, model.CapIndirectActivation) {
		return errorf(http.StatusForbidden, "indirect activation: endpoint %q is not a gateway (registered as %s without the %s capability)", gw.EndpointID, gw.Type, model.CapIndirectActivation)
	}
	draft, err := createDraft(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := decodeBody(w, r, "indirect activation", &body, false); err != nil {
		return err
	}
	if body == nil {
		return errorf(http.StatusBadRequest, "indirect activation: body is null, expected a JSON object with hardwareId and deviceModels")
	}
	var hw, sigText string
	var urns []string
	meta := map[string]string{}
	for k, v := range body {
		var err error
		switch k {
		case "hardwareId":
			err = json.Unmarshal(v, &hw)
		case "deviceModels":
			err = json.Unmarshal(v, &urns)
		case "signature":
			err = json.Unmarshal(v, &sigText)
		default:
			var sv string
			if err = json.Unmarshal(v, &sv); err == nil {
				meta[k] = sv
			}
		}
		if err != nil {
			return errorf(http.StatusBadRequest, "indirect activation: field %q: %v", k, err)
		}
	}
	if hw == "" {
		return errorf(http.StatusBadRequest, "indirect activation: hardwareId is missing, expected the device's hardware id")
	}
	var sig []byte
	if sigText != "" {
		if sig, err = decodeBase64(sigText); err != nil {
			return errorf(http.StatusBadRequest, "indirect activation: signature is not base64: %v", err)
		}
	}
	now := s.now().UnixMilli()
	var out *store.Device
	err = s.store.Update(func(tx store.Tx) error {
		cur, err := tx.DeviceByHardwareID(hw)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if cur != nil && cur.Type != api.DeviceTypeIndirect {
			return errorf(http.StatusConflict, "indirect activation: hardware id %q belongs to a %s, expected an indirectly connected device", hw, cur.Type)
		}
		byHMAC := false
		switch {
		case sig != nil && cur != nil && cur.SharedSecret != "":
			mac := hmac.New(sha256.New, []byte(cur.SharedSecret))
			mac.Write([]byte(gw.EndpointID))
			if !hmac.Equal(mac.Sum(nil), sig) {
				return errorf(http.StatusForbidden, "indirect activation of %q: signature does not verify, expected HMAC-SHA256(device shared secret, gateway endpoint id)", hw)
			}
			byHMAC = true
		case sig != nil:
			pub, err := x509.ParsePKIXPublicKey(gw.PublicKey)
			rk, ok := pub.(*rsa.PublicKey)
			if err != nil || !ok {
				return fmt.Errorf("stored public key of gateway %s is not an RSA key", gw.ID)
			}
			digest := sha256.Sum256([]byte(gw.EndpointID))
			if rsa.VerifyPKCS1v15(rk, crypto.SHA256, digest[:], sig) != nil {
				return errorf(http.StatusForbidden, "indirect activation of %q: signature does not verify, expected SHA256withRSA by the gateway's key over its endpoint id", hw)
			}
		case cur != nil && cur.SharedSecret != "":
			return errorf(http.StatusForbidden, "indirect activation of %q: signature missing, expected HMAC-SHA256 with the shared secret the device was registered with", hw)
		}
		if cur != nil && cur.Gateway != "" && cur.Gateway != gw.EndpointID && !byHMAC {
			return errorf(http.StatusForbidden, "indirect activation of %q: the device is bound to gateway %q", hw, cur.Gateway)
		}
		models, err := s.resolveModels(tx, urns, draft)
		if err != nil {
			return err
		}
		if cur == nil {
			id := newID()
			cur = &store.Device{ID: id, HardwareID: hw, Type: api.DeviceTypeIndirect, Created: now}
		}
		if cur.State != api.StateActivated {
			cur.State, cur.ActivatedAt = api.StateActivated, now
		}
		cur.EndpointID, cur.Gateway = cur.ID, gw.EndpointID
		for _, m := range models {
			if !contains(cur.Models, m) {
				cur.Models = append(cur.Models, m)
			}
		}
		if len(meta) > 0 {
			if cur.Metadata == nil {
				cur.Metadata = map[string]string{}
			}
			for k, v := range meta {
				cur.Metadata[k] = v
			}
		}
		out = cur
		return tx.PutDevice(cur)
	})
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.status == http.StatusForbidden {
			s.log.Warn("indirect activation rejected", "gateway", gw.EndpointID, "hardware_id", hw, "reason", he.msg)
		}
		return err
	}
	s.log.Info("indirect device activated", "gateway", gw.EndpointID, "endpoint_id", out.EndpointID, "hardware_id", hw)
	writeJSON(w, http.StatusOK, activationResponse{EndpointID: out.EndpointID, EndpointState: api.StateActivated, ActivationTime: out.ActivatedAt})
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
