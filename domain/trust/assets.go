package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxValue is the largest value a TLV record can hold (2-byte length).
const maxValue = 0xFFFF

// Assets are the contents of a provisioning file. The zero value is empty and
// invalid; Validate says what is missing.
//
// Assets hold secrets (SharedSecret, PrivateKey, Devices[i].SharedSecret).
// Pass *Assets around: String, GoString and MarshalJSON (all on the pointer)
// never print them, so neither fmt nor log/slog (text or JSON) can leak them; but printing an Assets value or its fields would.
type Assets struct {
	ServerURI    string            // scheme://host:port; scheme https, mqtts or http
	ClientID     string            // activation ID
	SharedSecret []byte            // the device's shared secret
	EndpointID   string            // empty until activated
	TrustAnchors [][]byte          // X.509 DER certificates that verify the server
	PrivateKey   []byte            // PKCS#8 DER, after activation
	PublicKey    []byte            // SubjectPublicKeyInfo DER, after activation
	Devices      []ConnectedDevice // indirectly connected devices provisioned to a gateway (tag 8)
}

// ConnectedDevice is the credential of one indirectly connected device that a
// gateway activates on its behalf.
type ConnectedDevice struct {
	HardwareID   string // the device's activation ID
	SharedSecret []byte
}

// String returns the hardware ID; it never prints the secret.
func (d ConnectedDevice) String() string {
	return fmt.Sprintf("%s (secret hidden)", d.HardwareID)
}

// GoString is like String, so that %#v does not print the secret either.
func (d ConnectedDevice) GoString() string {
	return fmt.Sprintf("trust.ConnectedDevice{HardwareID: %q, SharedSecret: <hidden>}", d.HardwareID)
}

// MarshalJSON writes only the hardware ID, so that JSON logging (log/slog's
// JSON handler marshals values) never prints the secret.
func (d ConnectedDevice) MarshalJSON() ([]byte, error) { return json.Marshal(d.HardwareID) }

// Validate reports every problem of a at once (errors.Join), each naming the
// field, what is wrong and what was expected:
//   - ServerURI, ClientID and SharedSecret are required; ServerURI must be
//     scheme://host[:port] with scheme https, mqtts or http in lower case, and
//     no user, path, query or fragment;
//   - identifiers (client, endpoint, hardware IDs) must be valid UTF-8 without
//     control characters;
//   - each trust anchor must be an X.509 DER certificate;
//   - PrivateKey (PKCS#8 DER) and PublicKey (SubjectPublicKeyInfo DER) are set
//     both or neither, and must belong together;
//   - each device needs a hardware ID, unique within a, and a shared secret;
//   - every value fits the file format (at most 65535 bytes).
//
// Validate returns nil for valid assets, and an error for a nil a.
func (a *Assets) Validate() error {
	if a == nil {
		return errors.New("assets are nil")
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkServerURI(a.ServerURI))
	if a.ClientID == "" {
		add(errors.New("client ID is missing"))
	} else {
		add(checkID("client ID", a.ClientID))
	}
	if len(a.SharedSecret) == 0 {
		add(errors.New("shared secret is missing"))
	}
	add(checkSize("shared secret", len(a.SharedSecret)))
	if a.EndpointID != "" {
		add(checkID("endpoint ID", a.EndpointID))
	}
	for i, der := range a.TrustAnchors {
		name := fmt.Sprintf("trust anchor %d", i+1)
		if _, err := x509.ParseCertificate(der); err != nil {
			add(fmt.Errorf("%s is not an X.509 DER certificate: %s", name, shortError(err)))
		}
		add(checkSize(name, len(der)))
	}
	add(checkKeys(a.PrivateKey, a.PublicKey))
	seen := make(map[string]int, len(a.Devices))
	for i, d := range a.Devices {
		name := fmt.Sprintf("device %d", i+1)
		switch first, dup := seen[d.HardwareID]; {
		case d.HardwareID == "":
			add(fmt.Errorf("%s: hardware ID is missing", name))
		case dup:
			add(fmt.Errorf("%s: hardware ID %q repeats device %d", name, d.HardwareID, first))
		default:
			seen[d.HardwareID] = i + 1
			add(checkID(name+": hardware ID", d.HardwareID))
		}
		if len(d.SharedSecret) == 0 {
			add(fmt.Errorf("%s: shared secret is missing", name))
		}
		// The record holds two nested records, each with a 3-byte header.
		add(checkSize(name, len(d.HardwareID)+len(d.SharedSecret)+6))
	}
	return errors.Join(errs...)
}

// IsMQTT reports whether the server URI names an MQTT server (mqtts://, or
// plain mqtt://): a device then talks to the cloud over MQTT (protocol.md
// §9), else over HTTPS. The URIs Validate accepts have lower-case schemes.
func IsMQTT(serverURI string) bool {
	return strings.HasPrefix(serverURI, "mqtts://") || strings.HasPrefix(serverURI, "mqtt://")
}

// checkServerURI checks s is scheme://host[:port] with a supported scheme.
func checkServerURI(s string) error {
	const want = "expected scheme://host:port, e.g. https://iot.example.com:443"
	if s == "" {
		return fmt.Errorf("server URI is missing; %s", want)
	}
	if err := checkSize("server URI", len(s)); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("server URI %q does not parse (%v); %s", s, err, want)
	}
	switch u.Scheme {
	case "https", "mqtts", "http", "mqtt":
	default:
		return fmt.Errorf("server URI %q: scheme %q is not supported; expected https, mqtts, http or mqtt", s, u.Scheme)
	}
	switch {
	case !strings.HasPrefix(s, u.Scheme+"://"):
		return fmt.Errorf("server URI %q: %s with the scheme in lower case", s, want)
	case u.Hostname() == "":
		return fmt.Errorf("server URI %q: host is missing; %s", s, want)
	case u.User != nil:
		return fmt.Errorf("server URI %q: user information is not allowed; %s", s, want)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("server URI %q: path, query and fragment are not allowed; %s", s, want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("server URI %q: port %s is out of range 1..65535", s, p)
		}
	}
	return nil
}

// checkID checks an identifier is printable UTF-8 and fits a record.
func checkID(name, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", name, s)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s %q contains a control character", name, s)
	}
	return checkSize(name, len(s))
}

// checkSize checks a value of n bytes fits a TLV record.
func checkSize(name string, n int) error {
	if n > maxValue {
		return fmt.Errorf("%s is %d bytes; the file format allows at most %d", name, n, maxValue)
	}
	return nil
}

// checkKeys checks the key pair is absent or complete, parses and matches.
func checkKeys(privDER, pubDER []byte) error {
	switch {
	case len(privDER) == 0 && len(pubDER) == 0:
		return nil
	case len(pubDER) == 0:
		return errors.New("private key is set but public key is missing; expected both (after activation) or neither")
	case len(privDER) == 0:
		return errors.New("public key is set but private key is missing; expected both (after activation) or neither")
	}
	var errs []error
	priv, err := x509.ParsePKCS8PrivateKey(privDER)
	if err != nil {
		errs = append(errs, fmt.Errorf("private key is not PKCS#8 DER: %s", privateKeyHint(privDER, err)))
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		errs = append(errs, fmt.Errorf("public key is not SubjectPublicKeyInfo DER: %s", publicKeyHint(pubDER, err)))
	}
	errs = append(errs, checkSize("private key", len(privDER)), checkSize("public key", len(pubDER)))
	if priv != nil && pub != nil {
		p, ok1 := priv.(interface{ Public() crypto.PublicKey })
		q, ok2 := pub.(interface{ Equal(crypto.PublicKey) bool })
		if !ok1 || !ok2 || !q.Equal(p.Public()) {
			errs = append(errs, errors.New("public key does not match the private key"))
		}
	}
	return errors.Join(errs...)
}

// privateKeyHint explains why der is not PKCS#8, naming the common mix-ups.
func privateKeyHint(der []byte, err error) string {
	const convert = "; convert it with: openssl pkcs8 -topk8 -nocrypt"
	if _, e := x509.ParsePKCS1PrivateKey(der); e == nil {
		return "it is a PKCS#1 RSA key" + convert
	}
	if _, e := x509.ParseECPrivateKey(der); e == nil {
		return "it is a SEC 1 EC key" + convert
	}
	if _, e := x509.ParsePKIXPublicKey(der); e == nil {
		return "it is a public key"
	}
	return shortError(err)
}

// publicKeyHint explains why der is not SubjectPublicKeyInfo.
func publicKeyHint(der []byte, err error) string {
	if _, e := x509.ParsePKCS1PublicKey(der); e == nil {
		return "it is a PKCS#1 RSA public key; convert it with: openssl rsa -RSAPublicKey_in -pubout"
	}
	if _, e := x509.ParsePKCS8PrivateKey(der); e == nil {
		return "it is a private key"
	}
	return shortError(err)
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

// String describes a for humans (e.g. "trust show"), one field per line. It
// never prints a secret: shared secrets and the private key appear only as
// "set" or "missing"; certificates and the public key as subject, expiry and
// SHA-256 fingerprint, which are public.
func (a *Assets) String() string {
	if a == nil {
		return "<nil>"
	}
	var b strings.Builder
	line := func(label, value string) { fmt.Fprintf(&b, "%-15s%s\n", label+":", value) }
	line("server URI", orNone(a.ServerURI, "missing"))
	line("client ID", orNone(a.ClientID, "missing"))
	line("shared secret", setOrMissing(len(a.SharedSecret) > 0))
	line("endpoint ID", orNone(a.EndpointID, "none (not activated)"))
	line("trust anchors", strconv.Itoa(len(a.TrustAnchors)))
	for i, der := range a.TrustAnchors {
		fmt.Fprintf(&b, "  %d: %s\n", i+1, describeCert(der))
	}
	switch {
	case len(a.PrivateKey) == 0 && len(a.PublicKey) == 0:
		line("key pair", "none (not activated)")
	default:
		line("private key", setOrMissing(len(a.PrivateKey) > 0))
		line("public key", describePublicKey(a.PublicKey))
	}
	line("devices", strconv.Itoa(len(a.Devices)))
	for i, d := range a.Devices {
		fmt.Fprintf(&b, "  %d: %s, shared secret %s\n", i+1, d.HardwareID, setOrMissing(len(d.SharedSecret) > 0))
	}
	return b.String()
}

// GoString keeps %#v from printing secrets; it returns the same as String.
func (a *Assets) GoString() string { return a.String() }

// MarshalJSON writes a summary of a without secrets, so that JSON logging
// (log/slog's JSON handler marshals values) never prints them: server_uri,
// client_id, endpoint_id, trust_anchors (count), activated (key pair present)
// and devices (count). Assets are never stored as JSON: the codecs in this
// package are the only serialisation.
func (a *Assets) MarshalJSON() ([]byte, error) {
	if a == nil {
		return []byte("null"), nil
	}
	return json.Marshal(struct {
		ServerURI    string `json:"server_uri"`
		ClientID     string `json:"client_id"`
		EndpointID   string `json:"endpoint_id,omitempty"`
		TrustAnchors int    `json:"trust_anchors"`
		Activated    bool   `json:"activated"`
		Devices      int    `json:"devices"`
	}{a.ServerURI, a.ClientID, a.EndpointID, len(a.TrustAnchors), len(a.PrivateKey) > 0 && len(a.PublicKey) > 0, len(a.Devices)})
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func setOrMissing(set bool) string {
	if set {
		return "set (hidden)"
	}
	return "missing"
}

func describeCert(der []byte) string {
	sum := sha256.Sum256(der)
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Sprintf("not an X.509 certificate (%d bytes), SHA-256 %x", len(der), sum)
	}
	return fmt.Sprintf("%s, expires %s, SHA-256 %x", c.Subject, c.NotAfter.UTC().Format("2006-01-02"), sum)
}

func describePublicKey(der []byte) string {
	if len(der) == 0 {
		return "missing"
	}
	sum := sha256.Sum256(der)
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return fmt.Sprintf("not a public key (%d bytes), SHA-256 %x", len(der), sum)
	}
	var kind string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		kind = fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		kind = "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		kind = "Ed25519"
	default:
		kind = fmt.Sprintf("%T", pub)
	}
	return fmt.Sprintf("%s, SHA-256 %x", kind, sum)
}
