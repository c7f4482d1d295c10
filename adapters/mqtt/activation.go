package mqtt

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/iotnode/iotnode/ports"
)

// Fixed values of the direct activation body (protocol.md §2b).
const (
	keyFormat           = "X.509"
	secretHashAlgorithm = "HmacSHA256"
	// defaultSignatureAlgorithm is used when ActivateDirect runs without a
	// Policy call before it.
	defaultSignatureAlgorithm = "SHA256withRSA"
	stateActivated            = "ACTIVATED"
	alreadyActivatedHint      = "the device may already be activated"
)

// Policy fetches the activation policy (protocol.md §2a) on
// iotcs/{activation ID}/activation/policy with {"OSName","OSVersion"},
// connected as the activation ID with the shared secret. It remembers the
// policy's hash algorithm for ActivateDirect.
//
// A refused connection (Oracle: the device is already activated, so its
// shared secret is no longer accepted) or a 401 error answer gives an
// error wrapping ports.ErrUnauthorized.
func (c *Client) Policy(ctx context.Context) (ports.ActivationPolicy, error) {
	const op = "get activation policy"
	body, _ := json.Marshal(struct {
		OSName    string `json:"OSName"`
		OSVersion string `json:"OSVersion"`
	}{c.osName, c.osVersion})
	payload, err := c.call(ctx, op, roleActivation, pathPolicy, body, alreadyActivatedHint)
	if err != nil {
		return ports.ActivationPolicy{}, err
	}
	var p struct {
		KeyType       string `json:"keyType"`
		HashAlgorithm string `json:"hashAlgorithm"`
		KeySize       int    `json:"keySize"`
	}
	const want = `a policy {"keyType","hashAlgorithm","keySize"}`
	if err := decodeJSON(op, payload, &p, want); err != nil {
		return ports.ActivationPolicy{}, err
	}
	var missing []string
	if p.KeyType == "" {
		missing = append(missing, "keyType")
	}
	if p.HashAlgorithm == "" {
		missing = append(missing, "hashAlgorithm")
	}
	if p.KeySize <= 0 {
		missing = append(missing, "keySize")
	}
	if len(missing) > 0 {
		return ports.ActivationPolicy{}, answerError(op, "the policy lacks %s; expected %s", strings.Join(missing, " and "), want)
	}
	c.mu.Lock()
	c.hashAlg = p.HashAlgorithm
	c.mu.Unlock()
	return ports.ActivationPolicy{KeyType: p.KeyType, HashAlgorithm: p.HashAlgorithm, KeySize: p.KeySize}, nil
}

// directBody is the body of a direct activation (protocol.md §2b).
type directBody struct {
	Request            certificationRequest `json:"certificationRequestInfo"`
	SignatureAlgorithm string               `json:"signatureAlgorithm"`
	Signature          string               `json:"signature"`
	DeviceModels       []string             `json:"deviceModels"`
}

type certificationRequest struct {
	Subject    string            `json:"subject"`
	PublicKey  publicKeyInfo     `json:"subjectPublicKeyInfo"`
	Attributes map[string]string `json:"attributes"`
}

type publicKeyInfo struct {
	Algorithm           string `json:"algorithm"`
	PublicKey           string `json:"publicKey"`
	Format              string `json:"format"`
	SecretHashAlgorithm string `json:"secretHashAlgorithm"`
}

// activationAnswer is the answer of both activations.
type activationAnswer struct {
	EndpointID     string      `json:"endpointId"`
	EndpointState  string      `json:"endpointState"`
	ActivationTime json.Number `json:"activationTime"`
	Certificate    string      `json:"certificate"`
}

// ActivateDirect activates the device (protocol.md §2b) on
// iotcs/{activation ID}/activation/direct, connected as the activation ID,
// with the body of the HTTPS call. The proof of possession is signed by
// req.Sign over
//
//	subject "\n" "RSA" "\n" "X.509" "\n" "HmacSHA256" "\n"
//	[key "='" value "'\n" for each attribute, sorted by key]
//	HMAC-SHA256(shared secret, activation ID) || public key DER
//
// with the policy's hash algorithm (SHA256withRSA when Policy was not
// called). The answer must say ACTIVATED. The client then disconnects: the
// caller saves the endpoint ID and keys to the trust store, and the next
// call connects as the endpoint ID with an RS256 password.
//
// A refused connection or a 401 error answer (already activated) gives an
// error wrapping ports.ErrUnauthorized.
func (c *Client) ActivateDirect(ctx context.Context, req ports.DirectActivation) (ports.Activation, error) {
	const op = "activate directly"
	invalid := func(format string, args ...any) (ports.Activation, error) {
		return ports.Activation{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	if req.Sign == nil {
		return invalid("no signer: DirectActivation.Sign is nil")
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return invalid("the public key is not SubjectPublicKeyInfo DER: %s", shortError(err))
	}
	if _, ok := pub.(*rsa.PublicKey); !ok {
		return invalid("the public key is %T; the activation protocol expects an RSA key", pub)
	}
	id, err := c.identity(op, roleActivation)
	if err != nil {
		return ports.Activation{}, err
	}
	attrs := req.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	var input []byte
	for _, line := range []string{id.id, "RSA", keyFormat, secretHashAlgorithm} {
		input = append(append(input, line...), '\n')
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		input = fmt.Appendf(input, "%s='%s'\n", k, attrs[k])
	}
	mac := hmac.New(sha256.New, id.secret)
	mac.Write([]byte(id.id))
	input = append(mac.Sum(input), req.PublicKey...)
	sig, err := req.Sign(input)
	if err != nil {
		return invalid("sign the activation request with the new device key: %w", err)
	}

	c.mu.Lock()
	alg := c.hashAlg
	c.mu.Unlock()
	if alg == "" {
		alg = defaultSignatureAlgorithm
	}
	body, err := json.Marshal(directBody{
		Request: certificationRequest{
			Subject: id.id,
			PublicKey: publicKeyInfo{Algorithm: "RSA", PublicKey: base64.StdEncoding.EncodeToString(req.PublicKey),
				Format: keyFormat, SecretHashAlgorithm: secretHashAlgorithm},
			Attributes: attrs,
		},
		SignatureAlgorithm: alg,
		Signature:          base64.StdEncoding.EncodeToString(sig),
		DeviceModels:       nonNil(req.ModelURNs),
	})
	if err != nil {
		return invalid("encode the activation request: %w", err)
	}
	payload, err := c.call(ctx, op, roleActivation, pathDirect, body, alreadyActivatedHint)
	if err != nil {
		return ports.Activation{}, err
	}
	act, err := c.activation(op, payload)
	if err != nil {
		return ports.Activation{}, err
	}
	c.dropConn(roleActivation)
	c.log.Info("activated: the next call connects as the endpoint ID", slog.String("endpoint_id", act.EndpointID))
	return act, nil
}

// dropConn disconnects the current connection if it speaks for r.
func (c *Client) dropConn(r role) {
	c.mu.Lock()
	cn := c.cur
	if cn == nil || cn.role != r {
		c.mu.Unlock()
		return
	}
	c.cur = nil
	c.mu.Unlock()
	cn.disconnect()
}

// ActivateIndirect activates one of a gateway's devices (protocol.md §2c)
// on iotcs/{gateway endpoint ID}/activation/indirect/device, connected as
// the gateway, with the flat body of the HTTPS call: hardwareId,
// deviceModels, the metadata keys at the top level, and signature (base64)
// when req.Signature is set. The metadata may not use the keys hardwareId,
// deviceModels or signature.
func (c *Client) ActivateIndirect(ctx context.Context, req ports.IndirectActivation) (ports.Activation, error) {
	op := fmt.Sprintf("activate device %q", req.HardwareID)
	invalid := func(format string, args ...any) (ports.Activation, error) {
		return ports.Activation{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	if req.HardwareID == "" {
		return invalid("the hardware ID is empty; expected the device's activation ID")
	}
	body := make(map[string]any, len(req.Metadata)+3)
	for k, v := range req.Metadata {
		body[k] = v
	}
	for _, k := range []string{"hardwareId", "deviceModels", "signature"} {
		if _, ok := body[k]; ok {
			return invalid("metadata key %q is reserved by the activation request; rename it", k)
		}
	}
	body["hardwareId"] = req.HardwareID
	body["deviceModels"] = nonNil(req.ModelURNs)
	if req.Signature != nil {
		body["signature"] = base64.StdEncoding.EncodeToString(req.Signature)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return invalid("encode the activation request: %w", err)
	}
	payload, err := c.call(ctx, op, roleEndpoint, pathIndirect, data, alreadyActivatedHint)
	if err != nil {
		return ports.Activation{}, err
	}
	return c.activation(op, payload)
}

// activation reads the answer of an activation call.
func (c *Client) activation(op string, payload []byte) (ports.Activation, error) {
	var a activationAnswer
	if err := decodeJSON(op, payload, &a, `an activation {"endpointId","endpointState","activationTime"}`); err != nil {
		return ports.Activation{}, err
	}
	if a.EndpointState != stateActivated {
		return ports.Activation{}, answerError(op, "endpointState is %q; expected %q", a.EndpointState, stateActivated)
	}
	if a.EndpointID == "" {
		return ports.Activation{}, answerError(op, "the answer has no endpointId")
	}
	act := ports.Activation{EndpointID: a.EndpointID}
	if a.ActivationTime != "" {
		ms, err := a.ActivationTime.Int64()
		if err != nil {
			return ports.Activation{}, answerError(op, "activationTime is %q; expected epoch milliseconds", a.ActivationTime)
		}
		act.ActivationTime = time.UnixMilli(ms)
	}
	if a.Certificate != "" {
		der, err := certificateDER(a.Certificate)
		if err != nil {
			// The clients do not need the certificate (protocol.md §2b).
			c.log.Warn("ignoring the certificate of the activation answer", slog.String("endpoint_id", a.EndpointID), slog.Any("error", err))
		}
		act.Certificate = der
	}
	return act, nil
}

// certificateDER accepts a PEM certificate or base64 DER.
func certificateDER(s string) ([]byte, error) {
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("the PEM block is %q; expected CERTIFICATE", block.Type)
		}
		der = block.Bytes
	} else if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil {
		der = b
	} else {
		return nil, errors.New("it is neither PEM nor base64 DER")
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		return nil, fmt.Errorf("it is not an X.509 certificate: %v", err)
	}
	return der, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
