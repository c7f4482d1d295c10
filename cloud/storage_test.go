package cloud

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

func TestStorage(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxObjectBytes = 1000 })
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(lightURN)
	provision := func(object, method string) string {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"object": object, "method": method})
		r := d.call("POST", "/iot/api/v2/provisioner/storage", string(body))
		var sr storageResponse
		if err := json.Unmarshal(r.body, &sr); r.status != 200 || err != nil {
			t.Fatalf("provision %s %s: %d %s", method, object, r.status, r.body)
		}
		return sr.StorageURL
	}
	object := func(method, u string, body io.Reader, hdr map[string]string) response {
		t.Helper()
		return e.do(method, strings.TrimPrefix(u, e.ts.URL), body, hdr)
	}

	put := provision("snap shot.jpg", "put")
	if want := e.ts.URL + "/storage/o/" + d.endpointID + "/snap%20shot.jpg?expires="; !strings.HasPrefix(put, want) {
		t.Fatalf("storage URL %s, want prefix %s", put, want)
	}
	if again := provision(d.endpointID+"/snap shot.jpg", "PUT"); again != put {
		t.Fatalf("prefixed name gave %s, want %s", again, put)
	}
	r := object("PUT", put, io.MultiReader(strings.NewReader("JPEG"), strings.NewReader("DATA")), map[string]string{
		"Content-Type": "image/jpeg", "opc-meta-camera": "front", "X-Object-Meta-Room": "lab"})
	if r.status != 200 {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	get := provision("snap shot.jpg", "GET")
	r = object("GET", get, nil, nil)
	if r.status != 200 || string(r.body) != "JPEGDATA" || r.header.Get("Content-Type") != "image/jpeg" ||
		r.header.Get("Opc-Meta-Camera") != "front" || r.header.Get("X-Object-Meta-Room") != "lab" ||
		r.header.Get("Content-Length") != "8" || r.header.Get("Last-Modified") != "Thu, 27 Nov 2025 12:00:00 GMT" {
		t.Fatalf("GET: %d %q %v", r.status, r.body, r.header)
	}
	if r = object("HEAD", get, nil, nil); r.status != 200 || len(r.body) != 0 || r.header.Get("Content-Length") != "8" {
		t.Fatalf("HEAD with a GET URL: %d %v", r.status, r.header)
	}
	if r = object("HEAD", provision("snap shot.jpg", "HEAD"), nil, nil); r.status != 200 {
		t.Fatalf("HEAD: %d", r.status)
	}
	// Overwrite replaces content and metadata.
	if r = object("PUT", put, strings.NewReader("v2"), nil); r.status != 200 {
		t.Fatalf("PUT again: %d %s", r.status, r.body)
	}
	if r = object("GET", get, nil, nil); string(r.body) != "v2" || r.header.Get("Content-Type") != "application/octet-stream" || r.header.Get("Opc-Meta-Camera") != "" {
		t.Fatalf("after overwrite: %q %v", r.body, r.header)
	}

	tampered := strings.Replace(get, "sig=", "sig=A", 1)
	other := strings.Replace(get, d.endpointID, "0-OTHER", 1)
	tests := []struct {
		name, method, url string
		body              io.Reader
		status            int
		msg               string
	}{
		{name: "PUT with a GET URL", method: "PUT", url: get, body: strings.NewReader("x"), status: 403,
			msg: "storage: URL signature does not match (a storage URL is valid only for the object and method it was issued for)"},
		{name: "GET with a PUT URL", method: "GET", url: put, status: 403,
			msg: "storage: URL signature does not match (a storage URL is valid only for the object and method it was issued for)"},
		{name: "tampered signature", method: "GET", url: tampered, status: 403,
			msg: "storage: URL signature does not match (a storage URL is valid only for the object and method it was issued for)"},
		{name: "another device's object", method: "GET", url: other, status: 403,
			msg: "storage: URL signature does not match (a storage URL is valid only for the object and method it was issued for)"},
		{name: "unsigned", method: "GET", url: e.ts.URL + "/storage/o/" + d.endpointID + "/snap%20shot.jpg", status: 403,
			msg: "storage: URL is not signed, expected the expires and sig parameters from POST provisioner/storage"},
		{name: "traversal", method: "GET", url: e.ts.URL + "/storage/o/" + d.endpointID + "/..%2f..%2fcloud.db?expires=1&sig=x", status: 404,
			msg: `storage: no object "` + d.endpointID + `/../../cloud.db"`},
		{name: "too large", method: "PUT", url: put, body: strings.NewReader(strings.Repeat("x", 1001)), status: 413,
			msg: "storage: object is 1001 bytes, expected at most 1000"},
		{name: "too large, chunked", method: "PUT", url: put, body: io.MultiReader(strings.NewReader(strings.Repeat("x", 1001))), status: 413,
			msg: "storage: object is larger than 1000 bytes"},
		{name: "missing object", method: "GET", url: provision("nothing-here", "GET"), status: 404,
			msg: `storage: no object "` + d.endpointID + `/nothing-here"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := object(tt.method, tt.url, tt.body, nil)
			if ae := r.apiError(t); r.status != tt.status || ae.Message != tt.msg {
				t.Fatalf("got   %d %q\nwant  %d %q", r.status, ae.Message, tt.status, tt.msg)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		u := provision("late", "GET")
		e.clock.Advance(StorageURLLifetime + time.Second)
		r := object("GET", u, nil, nil)
		if ae := r.apiError(t); r.status != 403 || ae.Message != "storage: URL expired at 2025-11-27T12:15:00Z, server time is 2025-11-27T12:15:01Z" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	d.getToken("")
	bad := []struct{ name, body, msg string }{
		{"traversal in the name", `{"object":"../../cloud.db","method":"PUT"}`, `storage provisioning: object name "../../cloud.db": has the segment "..", expected non-empty segments other than "." and ".."`},
		{"empty name", `{"object":"","method":"PUT"}`, `storage provisioning: object name "": empty, expected a name such as "photo.jpg"`},
		{"backslash", `{"object":"a\\b","method":"PUT"}`, `storage provisioning: object name "a\\b": contains a backslash, expected '/'-separated segments`},
		{"bad method", `{"object":"a","method":"DELETE"}`, `storage provisioning: method is "DELETE", expected PUT, GET or HEAD`},
		{"malformed JSON", `{"object":`, `storage provisioning: invalid JSON body: unexpected EOF`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := d.call("POST", "/iot/api/v2/provisioner/storage", tt.body)
			if ae := r.apiError(t); r.status != 400 || ae.Message != tt.msg {
				t.Fatalf("got   %d %q\nwant  400 %q", r.status, ae.Message, tt.msg)
			}
		})
	}
	t.Run("classic storage", func(t *testing.T) {
		r := d.call("GET", "/iot/api/v2/provisioner/storage", "")
		if ae := r.apiError(t); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" ||
			ae.Message != `classic storage (GET /iot/api/v2/provisioner/storage) is not supported: iotcloud offers new-style storage only, POST {"object","method"} to get a storage URL` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	_ = url.PathEscape
}
