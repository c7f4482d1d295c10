package cloud

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
)

// signedActivation builds a direct activation body with Java-style
// attributes lines, letting a test change any part.
func signedActivation(d *device, key *rsa.PrivateKey, attrs [][2]string, models []string, mod func(map[string]any)) string {
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	mac := hmac.New(sha256.New, []byte(d.secret))
	mac.Write([]byte(d.activationID))
	in := d.activationID + "\nRSA\nX.509\nHmacSHA256\n"
	attrJSON := "{"
	for i, kv := range attrs {
		in += kv[0] + "='" + kv[1] + "'\n"
		if i > 0 {
			attrJSON += ","
		}
		k, _ := json.Marshal(kv[0])
		v, _ := json.Marshal(kv[1])
		attrJSON += string(k) + ":" + string(v)
	}
	attrJSON += "}"
	sum := sha256.Sum256(append(append([]byte(in), mac.Sum(nil)...), der...))
	sig, _ := rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	body := map[string]any{
		"certificationRequestInfo": map[string]any{
			"subject": d.activationID,
			"subjectPublicKeyInfo": map[string]any{"algorithm": "RSA", "publicKey": base64.StdEncoding.EncodeToString(der),
				"format": "X.509", "secretHashAlgorithm": "HmacSHA256"},
			"attributes": json.RawMessage(attrJSON),
		},
		"signatureAlgorithm": "SHA256withRSA",
		"signature":          base64.StdEncoding.EncodeToString(sig),
		"deviceModels":       models,
	}
	if mod != nil {
		mod(body)
	}
	data, _ := json.Marshal(body)
	return string(data)
}

func spki(body map[string]any) map[string]any {
	return body["certificationRequestInfo"].(map[string]any)["subjectPublicKeyInfo"].(map[string]any)
}

func TestDirectActivation(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.getToken("oracle/iot/activation")
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	models := []string{humidityURN, capDirect, capPolicy}
	const p = "direct activation: "
	tests := []struct {
		name   string
		query  string
		body   string
		status int
		msg    string
	}{
		{name: "malformed JSON", body: `{"certificationRequestInfo":`, status: 400, msg: p + "invalid JSON body: unexpected EOF"},
		{name: "wrong subject", body: signedActivation(d, d.key, nil, models, func(b map[string]any) {
			b["certificationRequestInfo"].(map[string]any)["subject"] = "someone"
		}), status: 400, msg: p + `certificationRequestInfo.subject is "someone", expected the activation id "` + d.activationID + `"`},
		{name: "EC key algorithm", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { spki(b)["algorithm"] = "EC" }), status: 400,
			msg: p + `subjectPublicKeyInfo.algorithm is "EC", expected "RSA"`},
		{name: "PEM format", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { spki(b)["format"] = "PEM" }), status: 400,
			msg: p + `subjectPublicKeyInfo.format is "PEM", expected "X.509"`},
		{name: "HmacSHA1", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { spki(b)["secretHashAlgorithm"] = "HmacSHA1" }), status: 400,
			msg: p + `subjectPublicKeyInfo.secretHashAlgorithm is "HmacSHA1", expected "HmacSHA256"`},
		{name: "SHA1withRSA", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { b["signatureAlgorithm"] = "SHA1withRSA" }), status: 400,
			msg: p + `signatureAlgorithm is "SHA1withRSA", expected "SHA256withRSA"`},
		{name: "key not base64", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { spki(b)["publicKey"] = "***" }), status: 400,
			msg: p + `subjectPublicKeyInfo.publicKey is not base64: illegal base64 data at input byte 0`},
		{name: "key not DER", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { spki(b)["publicKey"] = "AAAA" }), status: 400,
			msg: p + `subjectPublicKeyInfo.publicKey is not a DER X.509 SubjectPublicKeyInfo`},
		{name: "1024-bit key", body: signedActivation(d, small, nil, models, nil), status: 400,
			msg: p + `subjectPublicKeyInfo.publicKey has 1024 bits, expected at least 2048`},
		{name: "signature by another key", body: signedActivation(d, d.key, nil, models, func(b map[string]any) {
			other := signedActivation(d, testKey(t, 2), nil, models, nil)
			var ob map[string]any
			json.Unmarshal([]byte(other), &ob)
			b["signature"] = ob["signature"]
		}), status: 400,
			msg: p + `signature does not verify: expected SHA256withRSA by the submitted key over the subject, key info lines, HMAC-SHA256(shared secret, activation id) and the key`},
		{name: "signature not base64", body: signedActivation(d, d.key, nil, models, func(b map[string]any) { b["signature"] = "!" }), status: 400,
			msg: p + `signature is not base64: illegal base64 data at input byte 0`},
		{name: "attributes not strings", body: signedActivation(d, d.key, nil, models, func(b map[string]any) {
			b["certificationRequestInfo"].(map[string]any)["attributes"] = map[string]any{"a": 1}
		}), status: 400, msg: p + `certificationRequestInfo.attributes: attribute "a" is not a string`},
		{name: "attributes lines in the wrong order", body: signedActivation(d, d.key, [][2]string{{"b", "2"}, {"a", "1"}}, models, func(b map[string]any) {
			b["certificationRequestInfo"].(map[string]any)["attributes"] = json.RawMessage(`{"a":"1","b":"2"}`)
		}), status: 400,
			msg: p + `signature does not verify: expected SHA256withRSA by the submitted key over the subject, key info lines, HMAC-SHA256(shared secret, activation id) and the key`},
		{name: "unknown URN", query: "?createDraft=false", body: signedActivation(d, d.key, nil, []string{"urn:x:unknown"}, nil), status: 400,
			msg: `deviceModels: unknown device model "urn:x:unknown", expected a model registered with POST /iot/api/v2/deviceModels (or activate with createDraft=true)`},
		{name: "bad createDraft", query: "?createDraft=maybe", body: "{}", status: 400,
			msg: `query parameter createDraft is "maybe", expected true or false`},
		{name: "empty URN", body: signedActivation(d, d.key, nil, []string{""}, nil), status: 400,
			msg: `deviceModels: empty URN`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.call("POST", "/iot/api/v2/activation/direct"+tt.query, tt.body)
			if ae := r.apiError(t); r.status != tt.status || ae.Message != tt.msg {
				t.Fatalf("got   %d %q\nwant  %d %q", r.status, ae.Message, tt.status, tt.msg)
			}
		})
	}
	// Java-style attributes, in document order, and a draft model for an unknown URN.
	body := signedActivation(d, d.key, [][2]string{{"OSName", "Linux"}, {"OSVersion", "6.1"}}, []string{humidityURN, "urn:x:new", capPolicy, capPolicy}, nil)
	r := d.call("POST", "/iot/api/v2/activation/direct", body)
	if r.status != 200 || !strings.Contains(string(r.body), `"endpointState":"ACTIVATED"`) || !strings.Contains(string(r.body), `"certificate":""`) {
		t.Fatalf("activation: %d %s", r.status, r.body)
	}
	got := mustDevice(t, e, d.activationID)
	if strings.Join(got.Models, ",") != humidityURN+",urn:x:new,"+capPolicy {
		t.Fatalf("models %v (want a set in first-seen order)", got.Models)
	}
	var draft map[string]any
	e.mustAdmin(200, "GET", api.Root+"/deviceModels/urn:x:new", nil, &draft)
	if draft["draft"] != true {
		t.Fatalf("draft model %v", draft)
	}
	// The activation token is still valid for an hour, but the device is activated.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/iot/api/v2/activation/policy", ""},
		{"POST", "/iot/api/v2/activation/direct", body},
	} {
		r := d.call(c.method, c.path, c.body)
		if ae := r.apiError(t); r.status != 401 || ae.Message != `device "`+d.activationID+`" is already activated (endpoint "`+got.EndpointID+`")` {
			t.Fatalf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// A model posted over the draft replaces it; posting it again is 200.
	m := `{"urn":"urn:x:new","name":"New","attributes":[{"name":"a","type":"INTEGER"}]}`
	e.mustAdmin(200, "POST", api.Root+"/deviceModels", m, nil)
	e.mustAdmin(200, "POST", api.Root+"/deviceModels", m, nil)
	var list api.List[json.RawMessage]
	e.mustAdmin(200, "GET", api.Root+"/deviceModels", nil, &list)
	if len(list.Items) != 4 {
		t.Fatalf("%d models", len(list.Items))
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{DataDir: "d", PublicURL: "https://h:1", AdminToken: strings.Repeat("a", 16)}
	tests := []struct {
		name string
		mod  func(*Config)
		msg  string
	}{
		{"good", func(*Config) {}, ""},
		{"everything wrong", func(c *Config) {
			*c = Config{PublicURL: "ftp://h/x", AdminToken: "short", TrustAnchors: [][]byte{{1}}, MessageRetention: -1, DedupWindow: -1,
				RequestTTL: -1, MaxMessages: -1, KDFIterations: -1, MaxObjectBytes: -1}
		}, "cloud config: DataDir is empty, expected the directory for the store and objects\n" +
			`cloud config: PublicURL "ftp://h/x": expected scheme://host[:port] with scheme https or http and nothing after the host` + "\n" +
			"cloud config: AdminToken is 5 characters, expected at least 16\n" +
			"cloud config: TrustAnchors[0] is not a DER X.509 certificate: x509: malformed certificate\n" +
			"cloud config: MessageRetention is -1ns, expected a positive duration or 0 for the default\n" +
			"cloud config: DedupWindow is -1ns, expected a positive duration or 0 for the default\n" +
			"cloud config: RequestTTL is -1ns, expected a positive duration or 0 for the default\n" +
			"cloud config: MaxMessages is -1, expected a positive count or 0 for the default\n" +
			"cloud config: KDFIterations is -1, expected a positive count or 0 for the default\n" +
			"cloud config: MaxObjectBytes is -1, expected a positive size or 0 for the default"},
		{"no URL", func(c *Config) { c.PublicURL = "" }, "cloud config: PublicURL is empty, expected the URL devices reach the cloud at, e.g. https://127.0.0.1:8443"},
		{"unparsable URL", func(c *Config) { c.PublicURL = "https://h:port" }, `cloud config: PublicURL "https://h:port": parse "https://h:port": invalid port ":port" after host`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate()
			if (err == nil && tt.msg != "") || (err != nil && err.Error() != tt.msg) {
				t.Fatalf("got   %v\nwant  %s", err, tt.msg)
			}
		})
	}
	t.Run("Open refuses it", func(t *testing.T) {
		if _, err := Open(Config{}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("server URI gets a port", func(t *testing.T) {
		for url, want := range map[string]string{"https://h": "https://h:443", "http://h/": "http://h:80", "https://h:8443": "https://h:8443"} {
			s := &Server{cfg: Config{PublicURL: url}.withDefaults()}
			if got := s.serverURI(); got != want {
				t.Errorf("%s: %s, want %s", url, got, want)
			}
		}
	})
}
