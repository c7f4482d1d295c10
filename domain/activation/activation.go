package activation

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Fixed values of the direct activation request (protocol.md §2b).
const (
	keyAlgorithm        = "RSA"
	keyFormat           = "X.509"
	secretHashAlgorithm = "HmacSHA256"
	stateActivated      = "ACTIVATED"

	// DefaultSignatureAlgorithm is the signatureAlgorithm of a direct
	// activation whose caller knows no policy (Direct.Body with "").
	DefaultSignatureAlgorithm = "SHA256withRSA"
)

// Shapes of the cloud's answers, for the transports' decode errors ("the
// answer is not " + shape + ": " + the decoder's error).
const (
	PolicyShape = `a policy {"keyType","hashAlgorithm","keySize"}`
	AnswerShape = `an activation {"endpointId","endpointState","activationTime"}`
)

// Policy is the activation policy as the cloud sends it (protocol.md §2a):
// what it requires of the key a direct activation registers. Its fields are
// those of ports.ActivationPolicy, so that one converts to the other.
type Policy struct {
	KeyType       string `json:"keyType"`       // "RSA"
	HashAlgorithm string `json:"hashAlgorithm"` // Java's Signature name: "SHA256withRSA"
	KeySize       int    `json:"keySize"`       // bits
}

// Check reports the fields a decoded policy lacks: an empty keyType or
// hashAlgorithm, a keySize that is not positive.
func (p Policy) Check() error {
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
		return fmt.Errorf("the policy lacks %s; expected %s", strings.Join(missing, " and "), PolicyShape)
	}
	return nil
}

// Direct is a direct activation request (protocol.md §2b): the public half of
// the device's new key pair and a signer for the proof of possession, so that
// the private key never reaches this package. Its fields are those of
// ports.DirectActivation, so that one converts to the other.
type Direct struct {
	PublicKey  []byte                            // SubjectPublicKeyInfo DER of an RSA key
	Sign       func(data []byte) ([]byte, error) // signs with the new private key
	ModelURNs  []string                          // user models plus capability URNs
	Attributes map[string]string
}

// Check reports what makes d unusable before anything is signed: no signer,
// or a public key that is not the SubjectPublicKeyInfo DER of an RSA key.
// Body checks the same; a caller checks first to fail before it reads any
// credentials.
func (d Direct) Check() error {
	if d.Sign == nil {
		return errors.New("no signer: DirectActivation.Sign is nil")
	}
	pub, err := x509.ParsePKIXPublicKey(d.PublicKey)
	if err != nil {
		return fmt.Errorf("the public key is not SubjectPublicKeyInfo DER: %s", shortError(err))
	}
	if _, ok := pub.(*rsa.PublicKey); !ok {
		return fmt.Errorf("the public key is %T; the activation protocol expects an RSA key", pub)
	}
	return nil
}

// Body returns the JSON body of the direct activation of the device whose
// activation ID and shared secret are given (protocol.md §2b):
//
//	{"certificationRequestInfo":{"subject":activationID,
//	  "subjectPublicKeyInfo":{"algorithm":"RSA","publicKey":base64 DER,
//	    "format":"X.509","secretHashAlgorithm":"HmacSHA256"},
//	  "attributes":{...}},
//	 "signatureAlgorithm":signatureAlgorithm,"signature":base64,
//	 "deviceModels":[...]}
//
// with attributes and deviceModels present even when empty. d.Sign is called
// once, over the proof-of-possession input
//
//	subject "\n" "RSA" "\n" "X.509" "\n" "HmacSHA256" "\n"
//	[key "='" value "'\n" for each attribute, sorted by key]
//	HMAC-SHA256(shared secret, activation ID) || public key DER
//
// and must sign it with signatureAlgorithm (the policy's hash algorithm;
// "" means DefaultSignatureAlgorithm). It fails when Check does, or when
// d.Sign fails (wrapping its error).
func (d Direct) Body(activationID string, sharedSecret []byte, signatureAlgorithm string) ([]byte, error) {
	if err := d.Check(); err != nil {
		return nil, err
	}
	attrs := d.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	sig, err := d.Sign(proofInput(activationID, sharedSecret, d.PublicKey, attrs))
	if err != nil {
		return nil, fmt.Errorf("sign the activation request with the new device key: %w", err)
	}
	if signatureAlgorithm == "" {
		signatureAlgorithm = DefaultSignatureAlgorithm
	}
	body, err := json.Marshal(directBody{
		Request: certificationRequest{
			Subject: activationID,
			PublicKey: publicKeyInfo{Algorithm: keyAlgorithm, PublicKey: base64.StdEncoding.EncodeToString(d.PublicKey),
				Format: keyFormat, SecretHashAlgorithm: secretHashAlgorithm},
			Attributes: attrs,
		},
		SignatureAlgorithm: signatureAlgorithm,
		Signature:          base64.StdEncoding.EncodeToString(sig),
		DeviceModels:       nonNil(d.ModelURNs),
	})
	if err != nil {
		return nil, fmt.Errorf("encode the activation request: %w", err)
	}
	return body, nil
}

// proofInput is what the proof of possession signs (see Direct.Body).
func proofInput(activationID string, sharedSecret, publicKey []byte, attrs map[string]string) []byte {
	var input []byte
	for _, line := range []string{activationID, keyAlgorithm, keyFormat, secretHashAlgorithm} {
		input = append(append(input, line...), '\n')
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		input = fmt.Appendf(input, "%s='%s'\n", k, attrs[k])
	}
	mac := hmac.New(sha256.New, sharedSecret)
	mac.Write([]byte(activationID))
	return append(mac.Sum(input), publicKey...)
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

// Indirect is a gateway's request to activate one of its devices
// (protocol.md §2c). Its fields are those of ports.IndirectActivation, so
// that one converts to the other.
type Indirect struct {
	HardwareID string   // the device's activation ID
	ModelURNs  []string // the device's models
	// Metadata keys such as manufacturer, modelNumber, serialNumber.
	Metadata map[string]string
	// Signature is optional proof (protocol.md §2c); nil sends none.
	Signature []byte
}

// Body returns the flat JSON body of the indirect activation (protocol.md
// §2c): hardwareId, deviceModels (present even when empty), the metadata
// keys at the top level, and signature (base64) when r.Signature is set. It
// fails when the hardware ID is empty or the metadata uses one of the keys
// hardwareId, deviceModels or signature.
func (r Indirect) Body() ([]byte, error) {
	if r.HardwareID == "" {
		return nil, errors.New("the hardware ID is empty; expected the device's activation ID")
	}
	body := make(map[string]any, len(r.Metadata)+3)
	for k, v := range r.Metadata {
		body[k] = v
	}
	for _, k := range []string{"hardwareId", "deviceModels", "signature"} {
		if _, ok := body[k]; ok {
			return nil, fmt.Errorf("metadata key %q is reserved by the activation request; rename it", k)
		}
	}
	body["hardwareId"] = r.HardwareID
	body["deviceModels"] = nonNil(r.ModelURNs)
	if r.Signature != nil {
		body["signature"] = base64.StdEncoding.EncodeToString(r.Signature)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode the activation request: %w", err)
	}
	return data, nil
}

// Answer is the cloud's answer to a direct or an indirect activation as it
// is sent (protocol.md §2b, §2c); Result checks it.
type Answer struct {
	EndpointID     string      `json:"endpointId"`
	EndpointState  string      `json:"endpointState"`
	ActivationTime json.Number `json:"activationTime"` // epoch milliseconds
	Certificate    string      `json:"certificate"`    // PEM or base64 DER
}

// Result is a checked Answer.
type Result struct {
	EndpointID     string
	ActivationTime time.Time // zero when the answer has none
	Certificate    []byte    // DER; nil when the answer has none or an unusable one
	// CertificateErr says why the answer's certificate is not in
	// Certificate, nil when it is or when there is none. It is no failure:
	// the clients do not need the certificate (protocol.md §2b), so a caller
	// reports it and goes on.
	CertificateErr error
}

// Result checks a decoded answer: endpointState must be ACTIVATED,
// endpointId set, and activationTime, when present, an integer (epoch
// milliseconds). A certificate that is neither a PEM CERTIFICATE nor base64
// DER of an X.509 certificate is dropped and explained in CertificateErr.
func (a Answer) Result() (Result, error) {
	if a.EndpointState != stateActivated {
		return Result{}, fmt.Errorf("endpointState is %q; expected %q", a.EndpointState, stateActivated)
	}
	if a.EndpointID == "" {
		return Result{}, errors.New("the answer has no endpointId")
	}
	r := Result{EndpointID: a.EndpointID}
	if a.ActivationTime != "" {
		ms, err := a.ActivationTime.Int64()
		if err != nil {
			return Result{}, fmt.Errorf("activationTime is %q; expected epoch milliseconds", a.ActivationTime)
		}
		r.ActivationTime = time.UnixMilli(ms)
	}
	if a.Certificate != "" {
		r.Certificate, r.CertificateErr = certificateDER(a.Certificate)
	}
	return r, nil
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

// nonNil makes a nil list encode as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// shortError drops the Go struct dump that encoding/asn1 appends to its
// structure errors, which means nothing to a user.
func shortError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " ("); i > 0 && strings.HasPrefix(msg, "asn1: ") {
		msg = msg[:i]
	}
	return msg
}
