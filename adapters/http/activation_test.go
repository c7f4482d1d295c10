package http_test

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
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestPolicy(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    ports.ActivationPolicy
		wantErr string
	}{
		{name: "policy", status: 200, body: `{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}`,
			want: ports.ActivationPolicy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: 2048}, wantErr: "<nil>"},
		{name: "fields missing", status: 200, body: `{"keyType":"RSA"}`,
			wantErr: `get activation policy: cloud answered 200: the policy lacks hashAlgorithm and keySize; expected a policy {"keyType","hashAlgorithm","keySize"}`},
		{name: "not JSON", status: 200, body: `nope`,
			wantErr: `get activation policy: cloud answered 200: the answer is not a policy {"keyType","hashAlgorithm","keySize"}: invalid character 'o' in literal null (expecting 'u')`},
		{name: "already activated", status: 401, body: `{"status":401,"message":"device already activated"}`,
			wantErr: "get activation policy: cloud answered 401: device already activated; the device may already be activated (unauthorized)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("GET /iot/api/v2/activation/policy", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := fc.client(false, nil, func(cfg *httpadapter.Config) { cfg.OSName, cfg.OSVersion = "Linux", "6.1 rpi" })
			got, err := c.Policy(t.Context())
			if errText(err) != tt.wantErr || got != tt.want {
				t.Errorf("Policy = %+v, %s\n want %+v, %s", got, errText(err), tt.want, tt.wantErr)
			}
			calls := fc.recordedCalls("/iot/api/v2/activation/policy")
			if len(calls) == 0 || calls[0].RawQuery != "OSName=Linux&OSVersion=6.1+rpi" {
				t.Errorf("calls = %+v, want one with query OSName=Linux&OSVersion=6.1+rpi", calls)
			}
			if tt.status == 401 && (!errors.Is(err, ports.ErrUnauthorized) || len(calls) != 2) {
				t.Errorf("a 401 gave %v after %d calls; want ErrUnauthorized after 2", err, len(calls))
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
	keys := make([]string, 0, len(b.Info.Attributes))
	for k := range b.Info.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
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
		return "signature does not verify"
	}
	return ""
}

func TestActivateDirect(t *testing.T) {
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER(t)}))
	tests := []struct {
		name        string
		allowDrafts bool
		policyHash  string // Policy is called first when set
		attributes  map[string]string
		status      int
		answer      map[string]any
		wantQuery   string
		wantSigAlg  string
		wantErr     string
		wantCert    bool
	}{
		{name: "activated with certificate", status: 200,
			answer:    map[string]any{"endpointId": "ep-1", "endpointState": "ACTIVATED", "activationTime": t0.UnixMilli(), "certificate": certPEM},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA", wantErr: "<nil>", wantCert: true},
		{name: "attributes signed, drafts allowed, policy algorithm", allowDrafts: true, policyHash: "SHA512withRSA",
			attributes: map[string]string{"serial": "42", "make": "acme"}, status: 200,
			answer:    map[string]any{"endpointId": "ep-1", "endpointState": "ACTIVATED", "activationTime": t0.UnixMilli()},
			wantQuery: "", wantSigAlg: "SHA512withRSA", wantErr: "<nil>"},
		{name: "unusable certificate is ignored", status: 200,
			answer:    map[string]any{"endpointId": "ep-1", "endpointState": "ACTIVATED", "activationTime": t0.UnixMilli(), "certificate": "garbage!"},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA", wantErr: "<nil>"},
		{name: "not activated", status: 200,
			answer:    map[string]any{"endpointId": "ep-1", "endpointState": "PENDING"},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA",
			wantErr: `activate directly: cloud answered 200: endpointState is "PENDING"; expected "ACTIVATED"`},
		{name: "no endpoint id", status: 200,
			answer:    map[string]any{"endpointState": "ACTIVATED"},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA",
			wantErr: "activate directly: cloud answered 200: the answer has no endpointId"},
		{name: "already activated", status: 401,
			answer:    map[string]any{"status": 401, "message": "already activated"},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA",
			wantErr: "activate directly: cloud answered 401: already activated; the device may already be activated (unauthorized)"},
		{name: "unknown model", status: 400,
			answer:    map[string]any{"status": 400, "message": "unknown device model urn:x", "field": "deviceModels"},
			wantQuery: "createDraft=false", wantSigAlg: "SHA256withRSA",
			wantErr: `activate directly: cloud answered 400: unknown device model urn:x (field "deviceModels")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("GET /iot/api/v2/activation/policy", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 200, map[string]any{"keyType": "RSA", "hashAlgorithm": tt.policyHash, "keySize": 2048})
			})
			var problem string
			var sigAlg string
			var models []string
			fc.handle("POST /iot/api/v2/activation/direct", func(w http.ResponseWriter, r *http.Request) {
				var body bytes.Buffer
				_, _ = body.ReadFrom(r.Body)
				problem = checkDirectBody(body.Bytes())
				var b struct {
					SignatureAlgorithm string   `json:"signatureAlgorithm"`
					DeviceModels       []string `json:"deviceModels"`
				}
				_ = json.Unmarshal(body.Bytes(), &b)
				sigAlg, models = b.SignatureAlgorithm, b.DeviceModels
				writeJSON(w, tt.status, tt.answer)
			})
			fc.handle("POST /iot/api/v2/messages", emptyMessages)
			store := porttest.NewMemTrustStore(fc.assets(false))
			c := fc.client(false, nil, func(cfg *httpadapter.Config) {
				cfg.Trust = store
				cfg.AllowDraftModels = tt.allowDrafts
			})
			if tt.policyHash != "" {
				if _, err := c.Policy(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			_, spki := keyDER(t)
			urns := []string{"urn:com:example:thing", "urn:oracle:iot:dcd:capability:direct_activation"}
			act, err := c.ActivateDirect(t.Context(), ports.DirectActivation{PublicKey: spki, Sign: signer, ModelURNs: urns, Attributes: tt.attributes})
			if errText(err) != tt.wantErr {
				t.Fatalf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if problem != "" {
				t.Errorf("the cloud found the body wrong: %s", problem)
			}
			calls := fc.recordedCalls("/iot/api/v2/activation/direct")
			if calls[0].RawQuery != tt.wantQuery || sigAlg != tt.wantSigAlg || !slices.Equal(models, urns) {
				t.Errorf("query %q, signatureAlgorithm %q, deviceModels %v; want %q, %q, %v", calls[0].RawQuery, sigAlg, models, tt.wantQuery, tt.wantSigAlg, urns)
			}
			if err != nil {
				return
			}
			if act.EndpointID != "ep-1" || !act.ActivationTime.Equal(t0) || (act.Certificate != nil) != tt.wantCert {
				t.Errorf("activation = %+v", act)
			}
			// The device saves its new identity; the next call must use it.
			a, _ := store.Load()
			a.EndpointID = endpointID
			a.PrivateKey, a.PublicKey = keyDER(t)
			if err := store.Save(a); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Exchange(t.Context(), nil, 100, 0); err != nil {
				t.Fatalf("exchange after activation: %v", err)
			}
			tcs := fc.tokenCalls()
			if last := tcs[len(tcs)-1]; last.Alg != "RS256" || last.Identity != endpointID || first(last.Form["scope"]) != "" {
				t.Errorf("token after activation: alg %s, identity %s, scope %q; want RS256, ep-1, empty", last.Alg, last.Identity, first(last.Form["scope"]))
			}
		})
	}
}

func TestActivateDirectInvalid(t *testing.T) {
	_, spki := keyDER(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	tests := []struct {
		name    string
		req     ports.DirectActivation
		wantErr string
	}{
		{name: "no signer", req: ports.DirectActivation{PublicKey: spki},
			wantErr: "activate directly: no signer: DirectActivation.Sign is nil"},
		{name: "bad key", req: ports.DirectActivation{PublicKey: []byte{1, 2}, Sign: signer},
			wantErr: "activate directly: the public key is not SubjectPublicKeyInfo DER: asn1: structure error: tags don't match"},
		{name: "not RSA", req: ports.DirectActivation{PublicKey: ecKey, Sign: signer},
			wantErr: "activate directly: the public key is *ecdsa.PublicKey; the activation protocol expects an RSA key"},
		{name: "signer fails", req: ports.DirectActivation{PublicKey: spki, Sign: func([]byte) ([]byte, error) { return nil, errors.New("tpm busy") }},
			wantErr: "activate directly: sign the activation request with the new device key: tpm busy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			c := fc.client(false, nil)
			_, err := c.ActivateDirect(t.Context(), tt.req)
			if errText(err) != tt.wantErr || !ports.IsPermanent(err) {
				t.Errorf("error = %s (permanent %v)\n want %s", errText(err), ports.IsPermanent(err), tt.wantErr)
			}
			if n := len(fc.recordedCalls("/iot/api/v2/activation/direct")); n != 0 {
				t.Errorf("%d activation calls, want none", n)
			}
		})
	}
}

func TestActivateIndirect(t *testing.T) {
	tests := []struct {
		name      string
		req       ports.IndirectActivation
		status    int
		answer    map[string]any
		wantBody  map[string]any
		wantEP    string
		wantErr   string
		permanent bool
	}{
		{
			name: "flat body with metadata and signature",
			req: ports.IndirectActivation{HardwareID: "icd-1", ModelURNs: []string{"urn:com:example:thing"},
				Metadata: map[string]string{"manufacturer": "ACME", "serialNumber": "42"}, Signature: []byte{1, 2, 3}},
			status: 200, answer: map[string]any{"endpointId": "icd-ep", "endpointState": "ACTIVATED", "activationTime": t0.UnixMilli()},
			wantBody: map[string]any{"hardwareId": "icd-1", "deviceModels": []any{"urn:com:example:thing"},
				"manufacturer": "ACME", "serialNumber": "42", "signature": "AQID"},
			wantEP: "icd-ep", wantErr: "<nil>",
		},
		{
			name:   "no signature, no models",
			req:    ports.IndirectActivation{HardwareID: "icd-2"},
			status: 200, answer: map[string]any{"endpointId": "icd-ep2", "endpointState": "ACTIVATED"},
			wantBody: map[string]any{"hardwareId": "icd-2", "deviceModels": []any{}},
			wantEP:   "icd-ep2", wantErr: "<nil>",
		},
		{
			name:   "already activated",
			req:    ports.IndirectActivation{HardwareID: "icd-3"},
			status: 401, answer: map[string]any{"status": 401, "message": "icd-3 is already activated"},
			wantBody: map[string]any{"hardwareId": "icd-3", "deviceModels": []any{}},
			wantErr:  `activate device "icd-3": cloud answered 401: icd-3 is already activated; the device may already be activated (unauthorized)`, permanent: true,
		},
		{
			name:    "reserved metadata key",
			req:     ports.IndirectActivation{HardwareID: "icd-4", Metadata: map[string]string{"signature": "x"}},
			wantErr: `activate device "icd-4": metadata key "signature" is reserved by the activation request; rename it`, permanent: true,
		},
		{
			name:    "no hardware id",
			req:     ports.IndirectActivation{},
			wantErr: `activate device "": the hardware ID is empty; expected the device's activation ID`, permanent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			var got map[string]any
			fc.handle("POST /iot/api/v2/activation/indirect/device", func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewDecoder(r.Body).Decode(&got)
				writeJSON(w, tt.status, tt.answer)
			})
			c := fc.client(true, nil)
			act, err := c.ActivateIndirect(t.Context(), tt.req)
			if errText(err) != tt.wantErr || ports.IsPermanent(err) != tt.permanent || act.EndpointID != tt.wantEP {
				t.Errorf("ActivateIndirect = %+v, %s\n want %s, %s", act, errText(err), tt.wantEP, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.wantBody) {
				t.Errorf("body = %v\n want %v", got, tt.wantBody)
			}
			if calls := fc.recordedCalls("/iot/api/v2/activation/indirect/device"); len(calls) > 0 {
				if calls[0].RawQuery != "createDraft=false" || calls[0].Header.Get("X-EndpointId") != endpointID {
					t.Errorf("query %q, X-EndpointId %q", calls[0].RawQuery, calls[0].Header.Get("X-EndpointId"))
				}
			}
		})
	}
}

// certDER returns a self-signed certificate for tests.
func certDER(t *testing.T) []byte {
	t.Helper()
	der, _ := selfSigned(t, "device", time.Hour)
	return der
}
