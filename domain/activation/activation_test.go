package activation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"sync"
	"testing"
	"time"
)

const (
	activationID = "act-1"
	sharedSecret = "s3cr3t"
)

// testKey is an RSA key for direct activations (1024 bits keep the tests
// quick; the package does not look at the size).
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	return k
})

// spki is the SubjectPublicKeyInfo DER of testKey.
func spki(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&testKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// signer signs with testKey (SHA256withRSA).
func signer(data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	return rsa.SignPKCS1v15(nil, testKey(), crypto.SHA256, sum[:])
}

// testCert returns a self-signed certificate.
func testCert(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		wantErr string
	}{
		{name: "complete", p: Policy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: 2048}, wantErr: "<nil>"},
		{name: "no key type", p: Policy{HashAlgorithm: "SHA256withRSA", KeySize: 2048},
			wantErr: `the policy lacks keyType; expected a policy {"keyType","hashAlgorithm","keySize"}`},
		{name: "two missing", p: Policy{KeyType: "RSA"},
			wantErr: `the policy lacks hashAlgorithm and keySize; expected a policy {"keyType","hashAlgorithm","keySize"}`},
		{name: "negative size", p: Policy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: -1},
			wantErr: `the policy lacks keySize; expected a policy {"keyType","hashAlgorithm","keySize"}`},
		{name: "empty", p: Policy{},
			wantErr: `the policy lacks keyType and hashAlgorithm and keySize; expected a policy {"keyType","hashAlgorithm","keySize"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(tt.p.Check()); got != tt.wantErr {
				t.Errorf("Check = %s\n want %s", got, tt.wantErr)
			}
		})
	}
}

func TestDirectCheck(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	tests := []struct {
		name    string
		d       Direct
		wantErr string
	}{
		{name: "usable", d: Direct{PublicKey: spki(t), Sign: signer}, wantErr: "<nil>"},
		{name: "no signer", d: Direct{PublicKey: spki(t)}, wantErr: "no signer: DirectActivation.Sign is nil"},
		{name: "not DER", d: Direct{PublicKey: []byte{1, 2}, Sign: signer},
			wantErr: "the public key is not SubjectPublicKeyInfo DER: asn1: structure error: tags don't match"},
		{name: "no key", d: Direct{Sign: signer},
			wantErr: "the public key is not SubjectPublicKeyInfo DER: asn1: syntax error: sequence truncated"},
		{name: "not RSA", d: Direct{PublicKey: ecKey, Sign: signer},
			wantErr: "the public key is *ecdsa.PublicKey; the activation protocol expects an RSA key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(tt.d.Check()); got != tt.wantErr {
				t.Errorf("Check = %s\n want %s", got, tt.wantErr)
			}
			// Body checks the same, before it signs.
			signed := false
			d := tt.d
			if d.Sign != nil {
				d.Sign = func(b []byte) ([]byte, error) { signed = true; return signer(b) }
			}
			if _, err := d.Body(activationID, []byte(sharedSecret), ""); errText(err) != tt.wantErr {
				t.Errorf("Body error = %s\n want %s", errText(err), tt.wantErr)
			}
			if signed != (tt.wantErr == "<nil>") {
				t.Errorf("signed = %v for a request with error %s", signed, tt.wantErr)
			}
		})
	}
}

// wantProofInput spells out protocol.md §2b's proof-of-possession input.
func wantProofInput(attrLines string, der []byte) []byte {
	mac := hmac.New(sha256.New, []byte(sharedSecret))
	mac.Write([]byte(activationID))
	in := []byte(activationID + "\nRSA\nX.509\nHmacSHA256\n" + attrLines)
	return append(mac.Sum(in), der...)
}

func TestDirectBody(t *testing.T) {
	der := spki(t)
	type body struct {
		Info struct {
			Subject string `json:"subject"`
			Key     struct {
				Algorithm           string `json:"algorithm"`
				PublicKey           string `json:"publicKey"`
				Format              string `json:"format"`
				SecretHashAlgorithm string `json:"secretHashAlgorithm"`
			} `json:"subjectPublicKeyInfo"`
			Attributes map[string]string `json:"attributes"`
		} `json:"certificationRequestInfo"`
		SignatureAlgorithm string   `json:"signatureAlgorithm"`
		Signature          string   `json:"signature"`
		DeviceModels       []string `json:"deviceModels"`
	}
	tests := []struct {
		name       string
		attributes map[string]string
		models     []string
		alg        string
		wantInput  []byte
		wantAttrs  map[string]string
		wantModels []string
		wantAlg    string
	}{
		{name: "no attributes, no models, default algorithm",
			wantInput: wantProofInput("", der), wantAttrs: map[string]string{}, wantModels: []string{}, wantAlg: "SHA256withRSA"},
		{name: "attributes sorted, models, policy algorithm",
			attributes: map[string]string{"serial": "42", "make": "acme", "b": "it's"}, models: []string{"urn:x", "urn:y"}, alg: "SHA512withRSA",
			wantInput: wantProofInput("b='it's'\nmake='acme'\nserial='42'\n", der),
			wantAttrs: map[string]string{"serial": "42", "make": "acme", "b": "it's"}, wantModels: []string{"urn:x", "urn:y"}, wantAlg: "SHA512withRSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var input []byte
			d := Direct{PublicKey: der, ModelURNs: tt.models, Attributes: tt.attributes,
				Sign: func(b []byte) ([]byte, error) { input = b; return signer(b) }}
			data, err := d.Body(activationID, []byte(sharedSecret), tt.alg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(input, tt.wantInput) {
				t.Errorf("signed input = %q\n want %q", input, tt.wantInput)
			}
			var b body
			if err := json.Unmarshal(data, &b); err != nil {
				t.Fatal(err)
			}
			k := b.Info.Key
			if b.Info.Subject != activationID || k.Algorithm != "RSA" || k.Format != "X.509" || k.SecretHashAlgorithm != "HmacSHA256" ||
				k.PublicKey != base64.StdEncoding.EncodeToString(der) {
				t.Errorf("certificationRequestInfo = %+v", b.Info)
			}
			if !reflect.DeepEqual(b.Info.Attributes, tt.wantAttrs) || !reflect.DeepEqual(b.DeviceModels, tt.wantModels) || b.SignatureAlgorithm != tt.wantAlg {
				t.Errorf("attributes %v, deviceModels %v, signatureAlgorithm %q; want %v, %v, %q",
					b.Info.Attributes, b.DeviceModels, b.SignatureAlgorithm, tt.wantAttrs, tt.wantModels, tt.wantAlg)
			}
			sig, err := base64.StdEncoding.DecodeString(b.Signature)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tt.wantInput)
			if err := rsa.VerifyPKCS1v15(&testKey().PublicKey, crypto.SHA256, sum[:], sig); err != nil {
				t.Errorf("the signature does not verify: %v", err)
			}
		})
	}
}

func TestDirectBodySignerFails(t *testing.T) {
	tpm := errors.New("tpm busy")
	d := Direct{PublicKey: spki(t), Sign: func([]byte) ([]byte, error) { return nil, tpm }}
	_, err := d.Body(activationID, []byte(sharedSecret), "")
	if errText(err) != "sign the activation request with the new device key: tpm busy" || !errors.Is(err, tpm) {
		t.Errorf("error = %v, want one wrapping the signer's", err)
	}
}

func TestIndirectBody(t *testing.T) {
	tests := []struct {
		name     string
		r        Indirect
		wantBody string
		wantErr  string
	}{
		{name: "metadata and signature",
			r:        Indirect{HardwareID: "hw-1", ModelURNs: []string{"urn:x"}, Metadata: map[string]string{"manufacturer": "ACME"}, Signature: []byte{1, 2}},
			wantBody: `{"deviceModels":["urn:x"],"hardwareId":"hw-1","manufacturer":"ACME","signature":"AQI="}`, wantErr: "<nil>"},
		{name: "no models, no signature", r: Indirect{HardwareID: "hw-1"},
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantErr: "<nil>"},
		{name: "empty signature is sent", r: Indirect{HardwareID: "hw-1", Signature: []byte{}},
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1","signature":""}`, wantErr: "<nil>"},
		{name: "no hardware ID", r: Indirect{},
			wantErr: `the hardware ID is empty; expected the device's activation ID`},
		{name: "reserved hardwareId", r: Indirect{HardwareID: "hw-1", Metadata: map[string]string{"hardwareId": "x"}},
			wantErr: `metadata key "hardwareId" is reserved by the activation request; rename it`},
		{name: "reserved deviceModels", r: Indirect{HardwareID: "hw-1", Metadata: map[string]string{"deviceModels": "x"}},
			wantErr: `metadata key "deviceModels" is reserved by the activation request; rename it`},
		{name: "reserved signature", r: Indirect{HardwareID: "hw-1", Metadata: map[string]string{"signature": "x"}},
			wantErr: `metadata key "signature" is reserved by the activation request; rename it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Body()
			if errText(err) != tt.wantErr || string(got) != tt.wantBody {
				t.Errorf("Body = %s, %s\n want %s, %s", got, errText(err), tt.wantBody, tt.wantErr)
			}
		})
	}
}

func TestAnswerResult(t *testing.T) {
	der := testCert(t)
	b64 := base64.StdEncoding.EncodeToString(der)
	pemText := "-----BEGIN CERTIFICATE-----\n" + b64 + "\n-----END CERTIFICATE-----\n"
	t0 := time.UnixMilli(1740830400000)
	tests := []struct {
		name        string
		answer      string
		want        Result
		wantErr     string
		wantCertErr string
	}{
		{name: "activated", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":1740830400000}`,
			want: Result{EndpointID: "ep-1", ActivationTime: t0}, wantErr: "<nil>", wantCertErr: "<nil>"},
		{name: "no time", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED"}`,
			want: Result{EndpointID: "ep-1"}, wantErr: "<nil>", wantCertErr: "<nil>"},
		{name: "PEM certificate", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED","certificate":` + quote(pemText) + `}`,
			want: Result{EndpointID: "ep-1", Certificate: der}, wantErr: "<nil>", wantCertErr: "<nil>"},
		{name: "base64 certificate", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED","certificate":"` + b64 + `"}`,
			want: Result{EndpointID: "ep-1", Certificate: der}, wantErr: "<nil>", wantCertErr: "<nil>"},
		{name: "unusable certificate is dropped", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED","certificate":"garbage!"}`,
			want: Result{EndpointID: "ep-1"}, wantErr: "<nil>", wantCertErr: "it is neither PEM nor base64 DER"},
		{name: "not activated", answer: `{"endpointId":"ep-1","endpointState":"PENDING"}`,
			wantErr: `endpointState is "PENDING"; expected "ACTIVATED"`},
		{name: "no state", answer: `{"endpointId":"ep-1"}`,
			wantErr: `endpointState is ""; expected "ACTIVATED"`},
		{name: "no endpoint ID", answer: `{"endpointState":"ACTIVATED"}`,
			wantErr: "the answer has no endpointId"},
		{name: "fractional time", answer: `{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":1.5}`,
			wantErr: `activationTime is "1.5"; expected epoch milliseconds`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Answer
			if err := json.Unmarshal([]byte(tt.answer), &a); err != nil {
				t.Fatal(err)
			}
			got, err := a.Result()
			if errText(err) != tt.wantErr {
				t.Fatalf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if errText(got.CertificateErr) != tt.wantCertErr && err == nil {
				t.Errorf("CertificateErr = %s, want %s", errText(got.CertificateErr), tt.wantCertErr)
			}
			got.CertificateErr = nil
			if got.EndpointID != tt.want.EndpointID || !got.ActivationTime.Equal(tt.want.ActivationTime) || !bytes.Equal(got.Certificate, tt.want.Certificate) {
				t.Errorf("Result = %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCertificateDER(t *testing.T) {
	der := testCert(t)
	b64 := base64.StdEncoding.EncodeToString(der)
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "PEM", in: "-----BEGIN CERTIFICATE-----\n" + b64 + "\n-----END CERTIFICATE-----\n", wantErr: "<nil>"},
		{name: "base64 DER", in: b64, wantErr: "<nil>"},
		{name: "base64 DER with spaces", in: "\n " + b64 + " \n", wantErr: "<nil>"},
		{name: "PEM key", in: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", wantErr: `the PEM block is "PRIVATE KEY"; expected CERTIFICATE`},
		{name: "junk", in: "???", wantErr: "it is neither PEM nor base64 DER"},
		{name: "base64 junk", in: "AAAA", wantErr: "it is not an X.509 certificate: x509: malformed certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certificateDER(tt.in)
			if e := errText(err); e != tt.wantErr {
				t.Fatalf("error = %s, want %s", e, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, der) {
				t.Error("DER differs")
			}
		})
	}
}
