package mqtt_test

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
	"slices"
	"strings"
	"testing"
	"time"

	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		name    string
		h       handler
		want    ports.ActivationPolicy
		wantErr string
	}{
		{name: "policy", h: answer(`{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}`),
			want: ports.ActivationPolicy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: 2048}, wantErr: "<nil>"},
		{name: "fields missing", h: answer(`{"keyType":"RSA"}`),
			wantErr: `get activation policy: the policy lacks hashAlgorithm and keySize; expected a policy {"keyType","hashAlgorithm","keySize"}`},
		{name: "not JSON", h: answer(`nope`),
			wantErr: `get activation policy: the answer is not a policy {"keyType","hashAlgorithm","keySize"}: invalid character 'o' in literal null (expecting 'u')`},
		{name: "already activated", h: errorAnswer(`{"status":401,"message":"device already activated"}`),
			wantErr: "get activation policy: cloud answered 401: device already activated; the device may already be activated (unauthorized)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			fc.handle("activation/policy", tt.h)
			c, _ := fc.client(fc.assets(false), func(cfg *mqttadapter.Config) { cfg.OSName, cfg.OSVersion = "Linux", "6.1 rpi" })
			got, err := c.Policy(t.Context())
			if errText(err) != tt.wantErr || got != tt.want {
				t.Errorf("Policy = %+v, %s\n want %+v, %s", got, errText(err), tt.want, tt.wantErr)
			}
			pubs := fc.published("activation/policy")
			if len(pubs) != 1 || pubs[0].ID != activationID || string(pubs[0].Payload) != `{"OSName":"Linux","OSVersion":"6.1 rpi"}` {
				t.Errorf("publishes = %+v, want one from %s with the OS", pubs, activationID)
			}
			if recs := fc.connectRecs(); len(recs) != 1 || recs[0].ClientID != activationID || recs[0].Header != `{"typ":"JWT","alg":"HS256"}` || !recs[0].Authentic {
				t.Errorf("connects = %+v, want one as %s with an HS256 password", recs, activationID)
			}
			if errors.Is(err, ports.ErrUnauthorized) != (tt.name == "already activated") || (err != nil && !ports.IsPermanent(err)) {
				t.Errorf("error %v: unauthorized %v, permanent %v", err, errors.Is(err, ports.ErrUnauthorized), ports.IsPermanent(err))
			}
		})
	}
}

// signer signs activation requests with the test device key.
func signer(data []byte) ([]byte, error) {
	sum := sha256.Sum256(data)
	return rsa.SignPKCS1v15(nil, deviceKey(), crypto.SHA256, sum[:])
}

// checkDirectBody verifies a direct activation body as the cloud must
// (protocol.md §2b) and returns what is wrong, or "".
func checkDirectBody(body []byte) string {
	var b struct {
		Info struct {
			Subject string `json:"subject"`
			Key     struct {
				Algorithm, PublicKey, Format, SecretHashAlgorithm string
			} `json:"subjectPublicKeyInfo"`
			Attributes map[string]string `json:"attributes"`
		} `json:"certificationRequestInfo"`
		SignatureAlgorithm string   `json:"signatureAlgorithm"`
		Signature          string   `json:"signature"`
		DeviceModels       []string `json:"deviceModels"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return err.Error()
	}
	k := b.Info.Key
	if b.Info.Subject != activationID || k.Algorithm != "RSA" || k.Format != "X.509" || k.SecretHashAlgorithm != "HmacSHA256" || b.Info.Attributes == nil {
		return "wrong certificationRequestInfo: " + string(body)
	}
	der, err := base64.StdEncoding.DecodeString(k.PublicKey)
	if err != nil {
		return "publicKey is not base64"
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return "publicKey is not SubjectPublicKeyInfo"
	}
	input := []byte(activationID + "\nRSA\nX.509\nHmacSHA256\n")
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range b.Info.Attributes {
			if !yield(k) {
				return
			}
		}
	})
	for _, k := range keys {
		input = append(input, k+"='"+b.Info.Attributes[k]+"'\n"...)
	}
	mac := hmac.New(sha256.New, []byte(sharedSecret))
	mac.Write([]byte(activationID))
	input = append(mac.Sum(input), der...)
	sig, err := base64.StdEncoding.DecodeString(b.Signature)
	if err != nil {
		return "signature is not base64"
	}
	sum := sha256.Sum256(input)
	if rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, sum[:], sig) != nil {
		return "the signature does not verify"
	}
	if b.SignatureAlgorithm != "SHA256withRSA" || !slices.Equal(b.DeviceModels, []string{"urn:com:example:thing", "urn:oracle:iot:dcd:capability:direct_activation"}) {
		return "wrong signatureAlgorithm or deviceModels: " + string(body)
	}
	return ""
}

// TestActivateDirect walks the activation: policy and direct activation as
// the activation ID (HS256), a disconnect, and the next call as the
// endpoint ID (RS256) the caller saved.
func TestActivateDirect(t *testing.T) {
	fc := newFakeCloud(t, true)
	store := porttest.NewMemTrustStore(fc.assets(false))
	c, _ := fc.client(fc.assets(false), func(cfg *mqttadapter.Config) { cfg.Trust = store })
	if _, err := c.Policy(t.Context()); err != nil {
		t.Fatal(err)
	}
	pkcs8, spki := keyDER(t, deviceKey())
	act, err := c.ActivateDirect(t.Context(), ports.DirectActivation{PublicKey: spki, Sign: signer,
		ModelURNs: []string{"urn:com:example:thing", "urn:oracle:iot:dcd:capability:direct_activation"}, Attributes: map[string]string{"b": "2", "a": "1"}})
	if err != nil || act.EndpointID != endpointID || !act.ActivationTime.Equal(time.UnixMilli(1740830400000)) {
		t.Fatalf("ActivateDirect = %+v, %v", act, err)
	}
	pubs := fc.published("activation/direct")
	if len(pubs) != 1 || pubs[0].ID != activationID {
		t.Fatalf("publishes = %+v", pubs)
	}
	if problem := checkDirectBody(pubs[0].Payload); problem != "" {
		t.Fatal(problem)
	}
	eventually(t, "the activation ID's disconnect", func() bool { return slices.Contains(fc.eventLog(), "disconnect act-1") })

	// The caller saves the identity; the next call connects with it.
	a, _ := store.Load()
	a.EndpointID, a.PrivateKey, a.PublicKey = act.EndpointID, pkcs8, spki
	if err := store.Save(a); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0); err != nil {
		t.Fatal(err)
	}
	recs := fc.connectRecs()
	if len(recs) != 2 || recs[0].ClientID != activationID || recs[1].ClientID != endpointID ||
		recs[1].Header != `{"typ":"JWT","alg":"RS256"}` || !recs[0].Authentic || !recs[1].Authentic {
		t.Errorf("connects = %+v\nwant act-1 (HS256), then ep-1 (RS256)", recs)
	}
	if pubs := fc.published("messages"); len(pubs) != 1 || pubs[0].ID != endpointID {
		t.Errorf("messages publishes = %+v, want one from %s", pubs, endpointID)
	}
}

func TestActivateDirectErrors(t *testing.T) {
	_, spki := keyDER(t, deviceKey())
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecSPKI, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	tests := []struct {
		name    string
		req     ports.DirectActivation
		h       handler
		wantErr string
	}{
		{name: "no signer", req: ports.DirectActivation{PublicKey: spki},
			wantErr: "activate directly: no signer: DirectActivation.Sign is nil"},
		{name: "EC key", req: ports.DirectActivation{PublicKey: ecSPKI, Sign: signer},
			wantErr: "activate directly: the public key is *ecdsa.PublicKey; the activation protocol expects an RSA key"},
		{name: "not activated", req: ports.DirectActivation{PublicKey: spki, Sign: signer},
			h:       answer(`{"endpointId":"ep-1","endpointState":"ENROLLED"}`),
			wantErr: `activate directly: endpointState is "ENROLLED"; expected "ACTIVATED"`},
		{name: "already activated", req: ports.DirectActivation{PublicKey: spki, Sign: signer},
			h:       errorAnswer(`{"status":401,"message":"already activated"}`),
			wantErr: "activate directly: cloud answered 401: already activated; the device may already be activated (unauthorized)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			if tt.h != nil {
				fc.handle("activation/direct", tt.h)
			}
			c, _ := fc.client(fc.assets(false))
			_, err := c.ActivateDirect(t.Context(), tt.req)
			if errText(err) != tt.wantErr || !ports.IsPermanent(err) {
				t.Errorf("error = %s (permanent %v)\n want %s", errText(err), ports.IsPermanent(err), tt.wantErr)
			}
		})
	}
}

func TestActivateIndirect(t *testing.T) {
	tests := []struct {
		name     string
		req      ports.IndirectActivation
		h        handler
		wantBody string
		wantCert []byte
		wantLog  string
		wantErr  string
	}{
		{name: "activated", req: ports.IndirectActivation{HardwareID: "hw-1", ModelURNs: []string{"urn:x"},
			Metadata: map[string]string{"manufacturer": "ACME"}, Signature: []byte{1, 2}},
			wantBody: `{"deviceModels":["urn:x"],"hardwareId":"hw-1","manufacturer":"ACME","signature":"AQI="}`, wantErr: "<nil>"},
		{name: "no models, no signature", req: ports.IndirectActivation{HardwareID: "hw-1"},
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantErr: "<nil>"},
		{name: "with a certificate", req: ports.IndirectActivation{HardwareID: "hw-1"},
			h:        answer(`{"endpointId":"icd-ep-1","endpointState":"ACTIVATED","certificate":"` + base64.StdEncoding.EncodeToString(testCert) + `"}`),
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantCert: testCert, wantErr: "<nil>"},
		{name: "unusable certificate is ignored", req: ports.IndirectActivation{HardwareID: "hw-1"},
			h:        answer(`{"endpointId":"icd-ep-1","endpointState":"ACTIVATED","certificate":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}`),
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantLog: `msg="ignoring the certificate of the activation answer" logger=iotnode.mqtt endpoint_id=icd-ep-1 error="the PEM block is \"PRIVATE KEY\"; expected CERTIFICATE"`, wantErr: "<nil>"},
		{name: "bad activation time", req: ports.IndirectActivation{HardwareID: "hw-1"},
			h:        answer(`{"endpointId":"icd-ep-1","endpointState":"ACTIVATED","activationTime":1.5}`),
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantErr: `activate device "hw-1": activationTime is "1.5"; expected epoch milliseconds`},
		{name: "no endpoint ID", req: ports.IndirectActivation{HardwareID: "hw-1"},
			h:        answer(`{"endpointState":"ACTIVATED"}`),
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`, wantErr: `activate device "hw-1": the answer has no endpointId`},
		{name: "reserved metadata key", req: ports.IndirectActivation{HardwareID: "hw-1", Metadata: map[string]string{"signature": "x"}},
			wantErr: `activate device "hw-1": metadata key "signature" is reserved by the activation request; rename it`},
		{name: "empty hardware ID", req: ports.IndirectActivation{},
			wantErr: `activate device "": the hardware ID is empty; expected the device's activation ID`},
		{name: "refused", req: ports.IndirectActivation{HardwareID: "hw-1"},
			h:        errorAnswer(`{"status":401,"message":"already activated"}`),
			wantBody: `{"deviceModels":[],"hardwareId":"hw-1"}`,
			wantErr:  `activate device "hw-1": cloud answered 401: already activated; the device may already be activated (unauthorized)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			if tt.h != nil {
				fc.handle("activation/indirect/device", tt.h)
			}
			c, logs := fc.client(fc.assets(true))
			act, err := c.ActivateIndirect(t.Context(), tt.req)
			if errText(err) != tt.wantErr {
				t.Fatalf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if err == nil && (act.EndpointID != "icd-ep-1" || !bytes.Equal(act.Certificate, tt.wantCert)) {
				t.Errorf("activation = %+v, want icd-ep-1 with certificate %x", act, tt.wantCert)
			}
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("logs = %s\nwant %s", logs, tt.wantLog)
			}
			pubs := fc.published("activation/indirect/device")
			if tt.wantBody == "" {
				if len(pubs) != 0 {
					t.Errorf("published %+v for an invalid request", pubs)
				}
				return
			}
			if len(pubs) != 1 || pubs[0].ID != endpointID || string(pubs[0].Payload) != tt.wantBody {
				t.Errorf("publishes = %+v\nwant one from the gateway %s with %s", pubs, endpointID, tt.wantBody)
			}
		})
	}
}

// testCert is a certificate for activation answers.
var testCert = func() []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "icd-ep-1"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return der
}()
