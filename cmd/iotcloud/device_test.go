package main

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/launch"
)

// testDevice is a directly connected device written from protocol.md §1-§3
// with the standard library only, so that the CLI tests drive a real device
// conversation: activation, DATA messages, REQUESTs and RESPONSEs.
type testDevice struct {
	t        *testing.T
	inst     *launch.Instance
	hc       *http.Client
	id       string // activation id
	secret   []byte
	key      *rsa.PrivateKey
	endpoint string
	token    string
}

func newTestDevice(t *testing.T, inst *launch.Instance, id string, secret []byte) *testDevice {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = inst.CAPool()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return &testDevice{t: t, inst: inst, hc: hc, id: id, secret: secret}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// assertion builds the JWT client assertion of protocol.md §1.
func (d *testDevice) assertion(sub string) string {
	alg := "HS256"
	if d.key != nil {
		alg = "RS256"
	}
	claims, _ := json.Marshal(map[string]any{"iss": sub, "sub": sub, "aud": "oracle/iot/oauth2/token", "exp": time.Now().Add(15 * time.Minute).Unix()})
	input := b64url([]byte(`{"typ":"JWT","alg":"`+alg+`"}`)) + "." + b64url(claims)
	var sig []byte
	if d.key == nil {
		mac := hmac.New(sha256.New, d.secret)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	} else {
		h := sha256.Sum256([]byte(input))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, d.key, crypto.SHA256, h[:]); err != nil {
			d.t.Fatal(err)
		}
	}
	return input + "." + b64url(sig)
}

// call sends one request and decodes a 2xx JSON answer into out.
func (d *testDevice) call(method, path string, header map[string]string, body io.Reader, out any) {
	d.t.Helper()
	req, _ := http.NewRequest(method, d.inst.URL()+path, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		d.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			d.t.Fatalf("%s %s: decode %q: %v", method, path, data, err)
		}
	}
}

func (d *testDevice) getToken(sub, scope string) {
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {d.assertion(sub)},
		"scope":                 {scope},
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	d.call("POST", "/iot/api/v2/oauth2/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader(form.Encode()), &tok)
	d.token = tok.AccessToken
}

// activate performs direct activation (protocol.md §2) declaring models.
func (d *testDevice) activate(models ...string) {
	d.getToken(d.id, "oracle/iot/activation")
	hdr := map[string]string{"Authorization": "Bearer " + d.token, "X-ActivationId": d.id, "Content-Type": "application/json"}
	var policy struct{ HashAlgorithm string }
	d.call("GET", "/iot/api/v2/activation/policy?OSName=Linux&OSVersion=6", hdr, nil, &policy)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		d.t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	var input bytes.Buffer
	fmt.Fprintf(&input, "%s\n%s\n%s\n%s\n", d.id, "RSA", "X.509", "HmacSHA256")
	mac := hmac.New(sha256.New, d.secret)
	mac.Write([]byte(d.id))
	input.Write(mac.Sum(nil))
	input.Write(pub)
	h := sha256.Sum256(input.Bytes())
	sig, _ := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	body, _ := json.Marshal(map[string]any{
		"certificationRequestInfo": map[string]any{
			"subject": d.id,
			"subjectPublicKeyInfo": map[string]any{"algorithm": "RSA", "publicKey": base64.StdEncoding.EncodeToString(pub),
				"format": "X.509", "secretHashAlgorithm": "HmacSHA256"},
			"attributes": map[string]any{},
		},
		"signatureAlgorithm": policy.HashAlgorithm,
		"signature":          base64.StdEncoding.EncodeToString(sig),
		"deviceModels":       append(models, "urn:oracle:iot:dcd:capability:direct_activation", "urn:oracle:iot:dcd:capability:device_policy"),
	})
	var act struct{ EndpointID, EndpointState string }
	d.call("POST", "/iot/api/v2/activation/direct?createDraft=false", hdr, bytes.NewReader(body), &act)
	if act.EndpointState != "ACTIVATED" {
		d.t.Fatalf("activation answered %+v", act)
	}
	d.key, d.endpoint = key, act.EndpointID
	d.getToken(d.endpoint, "")
}

// post sends a batch of messages and returns the messages the cloud answers with.
func (d *testDevice) post(msgs ...map[string]any) []map[string]any {
	if msgs == nil {
		msgs = []map[string]any{}
	}
	for _, m := range msgs {
		m["source"] = d.endpoint
		m["eventTime"] = time.Now().UnixMilli()
		m["priority"] = "LOW"
		m["reliability"] = "BEST_EFFORT"
		b := make([]byte, 16)
		rand.Read(b)
		m["clientId"] = fmt.Sprintf("%x", b)
	}
	body, _ := json.Marshal(msgs)
	var out []map[string]any
	d.call("POST", "/iot/api/v2/messages?acceptBytes=10000", map[string]string{
		"Authorization": "Bearer " + d.token, "X-EndpointId": d.endpoint, "Content-Type": "application/json",
	}, bytes.NewReader(body), &out)
	return out
}

// answer polls once, expects one REQUEST and answers it with status and body.
// It returns the request's method, URL and decoded body.
func (d *testDevice) answer(status int, body string) (method, url, reqBody string) {
	d.t.Helper()
	got := d.post()
	if len(got) != 1 || got[0]["type"] != "REQUEST" {
		d.t.Fatalf("poll: got %v, want one REQUEST", got)
	}
	p := got[0]["payload"].(map[string]any)
	b, _ := base64.StdEncoding.DecodeString(p["body"].(string))
	d.post(map[string]any{
		"type": "RESPONSE", "destination": got[0]["source"],
		"payload": map[string]any{"statusCode": status, "url": "", "requestId": got[0]["id"], "headers": map[string]any{},
			"body": base64.StdEncoding.EncodeToString([]byte(body))},
	})
	return p["method"].(string), p["url"].(string), string(b)
}
