package cloud

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestEnterpriseBadInput(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN, lightURN)
	fresh := e.register(api.DeviceTypeGateway, 1)
	dev := api.Root + "/devices/" + d.endpointID + "/deviceModels/"
	humidity, _ := os.ReadFile("../testdata/devicemodels/humidity_sensor.json")
	changed := strings.Replace(string(humidity), `"Humidity Sensor"`, `"Humidity Sensor v2"`, 1)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		msg                string
	}{
		{name: "value out of range", method: "PUT", path: dev + humidityURN + "/attributes/maxThreshold", body: `{"value":120}`, status: 400,
			msg: `attribute "maxThreshold": 120 is out of range 60..100`},
		{name: "value of the wrong type", method: "PUT", path: dev + lightURN + "/attributes/power", body: `{"value":"yes"}`, status: 400,
			msg: `attribute "power": want BOOLEAN, got "yes"`},
		{name: "read-only attribute", method: "PUT", path: dev + humidityURN + "/attributes/humidity", body: `{"value":50}`, status: 400,
			msg: `attribute "humidity" of "` + humidityURN + `" is not writable`},
		{name: "unknown attribute", method: "PUT", path: dev + humidityURN + "/attributes/colour", body: `{"value":50}`, status: 404,
			msg: `device model "` + humidityURN + `" has no attribute "colour"`},
		{name: "unknown URN", method: "PUT", path: dev + "urn:x:unknown/attributes/a", body: `{"value":1}`, status: 404,
			msg: `device "` + d.activationID + `" does not implement device model "urn:x:unknown"`},
		{name: "unknown device", method: "PUT", path: api.Root + "/devices/0-NOPE/deviceModels/" + humidityURN + "/attributes/maxThreshold", body: `{"value":70}`, status: 404,
			msg: `device "0-NOPE" is not registered`},
		{name: "malformed JSON", method: "PUT", path: dev + humidityURN + "/attributes/maxThreshold", body: `{"value":`, status: 400,
			msg: `set attribute: invalid JSON body: unexpected EOF`},
		{name: "unknown field", method: "PUT", path: dev + humidityURN + "/attributes/maxThreshold", body: `{"valeu":70}`, status: 400,
			msg: `set attribute: invalid JSON body: json: unknown field "valeu"`},
		{name: "action argument out of range", method: "POST", path: dev + lightURN + "/actions/blink", body: `{"value":50}`, status: 400,
			msg: `action "blink": argument "value": 50 is out of range 1..20`},
		{name: "action with a missing argument", method: "POST", path: dev + lightURN + "/actions/schedule", body: `{"at":1764244800000}`, status: 400,
			msg: `action "schedule": argument "seconds" is missing`},
		{name: "unknown action", method: "POST", path: dev + lightURN + "/actions/explode", body: ``, status: 404,
			msg: `device model "` + lightURN + `" has no action "explode"`},
		{name: "unknown model", method: "GET", path: api.Root + "/deviceModels/urn:x:unknown", status: 404,
			msg: `device model "urn:x:unknown" is not registered`},
		{name: "invalid model", method: "POST", path: api.Root + "/deviceModels", body: `{"urn":"urn:x","name":"x","attributes":[{"name":"a","type":"COLOUR"}]}`, status: 400,
			msg: `device model "urn:x": attribute "a": unknown type "COLOUR": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI`},
		{name: "model conflict", method: "POST", path: api.Root + "/deviceModels", body: changed, status: 409,
			msg: `device model "` + humidityURN + `" already exists with different content; models are immutable, expected a new URN for a new version`},
		{name: "duplicate hardware id", method: "POST", path: api.Root + "/devices", body: api.RegisterDevice{HardwareID: "hw-dup"}, status: 201},
		{name: "duplicate hardware id again", method: "POST", path: api.Root + "/devices", body: api.RegisterDevice{HardwareID: "hw-dup"}, status: 409,
			msg: `register device: hardware id "hw-dup" is already registered`},
		{name: "bad device type", method: "POST", path: api.Root + "/devices", body: api.RegisterDevice{Type: "TOASTER"}, status: 400,
			msg: `register device: type is "TOASTER", expected DIRECTLY_CONNECTED_DEVICE, GATEWAY or INDIRECTLY_CONNECTED_DEVICE`},
		{name: "short passphrase", method: "POST", path: api.Root + "/devices/" + fresh.activationID + "/provisioningFile", body: api.ProvisioningFileRequest{Passphrase: "short"}, status: 400,
			msg: `provisioning file: passphrase is 5 characters, expected at least 8`},
		{name: "unknown file format", method: "POST", path: api.Root + "/devices/" + fresh.activationID + "/provisioningFile", body: api.ProvisioningFileRequest{Passphrase: "long enough", Format: "pem"}, status: 400,
			msg: `provisioning file: format is "pem", expected "v2" or "oracle"`},
		{name: "file for an activated device", method: "POST", path: api.Root + "/devices/" + d.activationID + "/provisioningFile", body: api.ProvisioningFileRequest{Passphrase: "long enough"}, status: 409,
			msg: `provisioning file: device "` + d.activationID + `" is already activated, a provisioning file can only activate a registered device`},
		{name: "unknown request", method: "GET", path: api.Root + "/requests/nope", status: 404,
			msg: `request "nope" does not exist`},
		{name: "bad limit", method: "GET", path: api.Root + "/messages?limit=5000", status: 400,
			msg: `query parameter limit is "5000", expected 1..1000`},
		{name: "bad since", method: "GET", path: api.Root + "/messages?since=yesterday", status: 400,
			msg: `query parameter since is "yesterday", expected epoch milliseconds`},
		{name: "bad after", method: "GET", path: api.Root + "/messages?after=last", status: 400,
			msg: `query parameter after is "last", expected the seq of a message or the next of an earlier answer (a non-negative integer)`},
		{name: "negative after", method: "GET", path: api.Root + "/messages?after=-1", status: 400,
			msg: `query parameter after is "-1", expected the seq of a message or the next of an earlier answer (a non-negative integer)`},
		{name: "empty after", method: "GET", path: api.Root + "/messages?after=", status: 400,
			msg: `query parameter after is "", expected the seq of a message or the next of an earlier answer (a non-negative integer)`},
		{name: "bad type", method: "GET", path: api.Root + "/messages?type=GOSSIP", status: 400,
			msg: `query parameter type is "GOSSIP", expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT`},
		{name: "wrong method", method: "DELETE", path: api.Root + "/devices", status: 405,
			msg: `method DELETE is not allowed on /iot/api/v2/devices, expected GET, POST`},
		{name: "no such endpoint", method: "GET", path: "/iot/api/v2/nothing/here", status: 404,
			msg: `no such endpoint: GET /iot/api/v2/nothing/here`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.admin(tt.method, tt.path, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.msg == "" {
				return
			}
			if ae := r.apiError(t); ae.Message != tt.msg || ae.Status != tt.status {
				t.Fatalf("got   %q\nwant  %q", ae.Message, tt.msg)
			}
		})
	}
}

func TestEnterpriseDevicesAndFiles(t *testing.T) {
	e := newEnv(t)
	var created api.Device
	e.mustAdmin(201, "POST", api.Root+"/devices", api.RegisterDevice{HardwareID: "pi-1", Type: api.DeviceTypeGateway, Metadata: map[string]string{"room": "lab"}}, &created)
	if created.State != api.StateRegistered || created.SharedSecret == "" || created.ID == "" || created.Type != api.DeviceTypeGateway {
		t.Fatalf("created %+v", created)
	}
	var got api.Device
	e.mustAdmin(200, "GET", api.Root+"/devices/"+created.ID, nil, &got)
	if got.SharedSecret != "" || got.HardwareID != "pi-1" || got.Metadata["room"] != "lab" {
		t.Fatalf("GET device %+v (the secret is only in the POST answer)", got)
	}
	var list api.List[api.Device]
	e.mustAdmin(200, "GET", api.Root+"/devices", nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("list %+v", list)
	}
	for _, format := range []string{"", "v2", "oracle"} {
		t.Run("format "+format, func(t *testing.T) {
			r := e.admin("POST", api.Root+"/devices/"+created.ID+"/provisioningFile", api.ProvisioningFileRequest{Passphrase: "correct horse", Format: format})
			if r.status != 200 || r.header.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			a, f, err := trust.Decode(r.body, "correct horse")
			if err != nil {
				t.Fatal(err)
			}
			if a.ServerURI != e.ts.URL || a.ClientID != created.ID || string(a.SharedSecret) != created.SharedSecret ||
				len(a.TrustAnchors) != 1 || string(a.TrustAnchors[0]) != string(e.ts.Certificate().Raw) || a.EndpointID != "" {
				t.Fatalf("assets %v (format %v)", a, f)
			}
		})
	}
}

func TestGatewayAndIndirectDevices(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	gw := e.register(api.DeviceTypeGateway, 0)
	gw.activate(capIndirect)
	// A pre-registered ICD with a secret, whose activation must be signed.
	var icdReg api.Device
	e.mustAdmin(201, "POST", api.Root+"/devices", api.RegisterDevice{HardwareID: "sensor-secret", Type: api.DeviceTypeIndirect, SharedSecret: "icd-secret"}, &icdReg)

	activate := func(body map[string]any) response {
		data, _ := json.Marshal(body)
		return gw.call("POST", "/iot/api/v2/activation/indirect/device?createDraft=false", string(data))
	}
	icdBody := map[string]any{"hardwareId": "sensor-1", "deviceModels": []string{humidityURN}, "manufacturer": "ACME", "serialNumber": "42"}
	r := activate(icdBody)
	var ar activationResponse
	if err := json.Unmarshal(r.body, &ar); r.status != 200 || err != nil || ar.EndpointState != "ACTIVATED" {
		t.Fatalf("indirect activation: %d %s", r.status, r.body)
	}
	r2 := activate(icdBody)
	var ar2 activationResponse
	json.Unmarshal(r2.body, &ar2)
	if r2.status != 200 || ar2.EndpointID != ar.EndpointID {
		t.Fatalf("same hardwareId gave %s, want %s", r2.body, ar.EndpointID)
	}
	var icd api.Device
	e.mustAdmin(200, "GET", api.Root+"/devices/"+ar.EndpointID, nil, &icd)
	if icd.Gateway != gw.endpointID || icd.Type != api.DeviceTypeIndirect || icd.Metadata["manufacturer"] != "ACME" {
		t.Fatalf("icd %+v", icd)
	}

	hmacSig := func(secret string) string {
		return b64(hs256([]byte(secret))([]byte(gw.endpointID)))
	}
	tests := []struct {
		name   string
		body   map[string]any
		status int
		msg    string
	}{
		{name: "unknown URN", body: map[string]any{"hardwareId": "s2", "deviceModels": []string{"urn:x:nope"}}, status: 400,
			msg: `deviceModels: unknown device model "urn:x:nope", expected a model registered with POST /iot/api/v2/deviceModels (or activate with createDraft=true)`},
		{name: "no hardwareId", body: map[string]any{"deviceModels": []string{humidityURN}}, status: 400,
			msg: `indirect activation: hardwareId is missing, expected the device's hardware id`},
		{name: "metadata not a string", body: map[string]any{"hardwareId": "s3", "deviceModels": []string{humidityURN}, "serialNumber": 42}, status: 400,
			msg: `indirect activation: field "serialNumber": json: cannot unmarshal number into Go value of type string`},
		{name: "registered secret, unsigned", body: map[string]any{"hardwareId": "sensor-secret", "deviceModels": []string{humidityURN}}, status: 403,
			msg: `indirect activation of "sensor-secret": signature missing, expected HMAC-SHA256 with the shared secret the device was registered with`},
		{name: "registered secret, wrong signature", body: map[string]any{"hardwareId": "sensor-secret", "deviceModels": []string{humidityURN}, "signature": hmacSig("wrong")}, status: 403,
			msg: `indirect activation of "sensor-secret": signature does not verify, expected HMAC-SHA256(device shared secret, gateway endpoint id)`},
		{name: "registered secret, signed", body: map[string]any{"hardwareId": "sensor-secret", "deviceModels": []string{humidityURN}, "signature": hmacSig("icd-secret")}, status: 200},
		{name: "signed by the gateway key", body: map[string]any{"hardwareId": "sensor-rsa", "deviceModels": []string{humidityURN}, "signature": b64(rs256(gw.key)([]byte(gw.endpointID)))}, status: 200},
		{name: "signed by another key", body: map[string]any{"hardwareId": "sensor-rsa2", "deviceModels": []string{humidityURN}, "signature": b64(rs256(testKey(t, 2))([]byte(gw.endpointID)))}, status: 403,
			msg: `indirect activation of "sensor-rsa2": signature does not verify, expected SHA256withRSA by the gateway's key over its endpoint id`},
		{name: "hardware id of a gateway", body: map[string]any{"hardwareId": mustDevice(t, e, gw.activationID).HardwareID, "deviceModels": []string{}}, status: 409,
			msg: `indirect activation: hardware id "` + mustDevice(t, e, gw.activationID).HardwareID + `" belongs to a GATEWAY, expected an indirectly connected device`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := activate(tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.msg != "" {
				if ae := r.apiError(t); ae.Message != tt.msg {
					t.Fatalf("got   %q\nwant  %q", ae.Message, tt.msg)
				}
			}
		})
	}
	t.Run("a DCD is not a gateway", func(t *testing.T) {
		dcd := e.register(api.DeviceTypeDirect, 1)
		dcd.activate(humidityURN)
		r := dcd.call("POST", "/iot/api/v2/activation/indirect/device", `{"hardwareId":"s9","deviceModels":[]}`)
		if ae := r.apiError(t); r.status != 403 || ae.Message != `indirect activation: endpoint "`+dcd.endpointID+`" is not a gateway (registered as DIRECTLY_CONNECTED_DEVICE without the urn:oracle:iot:dcd:capability:indirect_activation capability)` {
			t.Fatalf("%d %s", r.status, r.body)
		}
		// Nor may it send for the gateway's ICD.
		r = dcd.send("", "["+dataMsg("s-1", ar.EndpointID, humidityURN+":attributes", `{"humidity":1}`)+"]")
		if r.status != 403 {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})

	// The gateway sends for its ICD and receives the ICD's requests.
	r = gw.send("", "["+dataMsg("icd-1", ar.EndpointID, humidityURN+":attributes", `{"humidity":33}`)+"]")
	if r.status != 202 {
		t.Fatalf("gateway send for ICD: %d %s", r.status, r.body)
	}
	var acc api.Accepted
	e.mustAdmin(202, "PUT", api.Root+"/devices/"+ar.EndpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 75}, &acc)
	r = gw.send("", "")
	msgs, err := message.Decode(r.body)
	if err != nil || len(msgs) != 1 || msgs[0].Destination != ar.EndpointID || msgs[0].ID != acc.RequestID {
		t.Fatalf("gateway poll: %s %v", r.body, err)
	}
	// The ICD's response, sent by the gateway, completes it.
	gw.send("", "["+responseMsg("icd-r1", ar.EndpointID, acc.RequestID, 400, "Bad Request")+"]")
	var req api.Request
	e.mustAdmin(200, "GET", api.Root+"/requests/"+acc.RequestID, nil, &req)
	if req.Status != api.RequestFailed || req.Response.Body != "Bad Request" {
		t.Fatalf("request %+v", req)
	}
}

func b64(b []byte) string { return stdB64(b) }

func mustDevice(t *testing.T, e *env, id string) api.Device {
	t.Helper()
	var d api.Device
	e.mustAdmin(http.StatusOK, "GET", api.Root+"/devices/"+id, nil, &d)
	return d
}

func TestOracleFileNeedsRSAAnchors(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ec ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) { c.TrustAnchors = [][]byte{der} })
	var created api.Device
	e.mustAdmin(201, "POST", api.Root+"/devices", api.RegisterDevice{HardwareID: "pi-ec"}, &created)
	r := e.admin("POST", api.Root+"/devices/"+created.ID+"/provisioningFile", api.ProvisioningFileRequest{Passphrase: "correct horse", Format: "oracle"})
	want := `provisioning file: format oracle needs RSA trust anchors (Oracle's JS library reads no other), but trust anchor 0 (ec ca) has a key of type ECDSA: start iotcloud on a new data directory to get an RSA CA, or use format v2`
	if ae := r.apiError(t); r.status != 409 || ae.Message != want {
		t.Fatalf("%d %q", r.status, ae.Message)
	}
	if r := e.admin("POST", api.Root+"/devices/"+created.ID+"/provisioningFile", api.ProvisioningFileRequest{Passphrase: "correct horse", Format: "v2"}); r.status != 200 {
		t.Fatalf("v2 with an ECDSA anchor: %d %s", r.status, r.body)
	}
}
