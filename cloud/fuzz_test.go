package cloud

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
)

// FuzzMessagesPost feeds arbitrary bodies to POST messages through the real
// handler: the answer is 200/202 or a 400/403/413 api.Error, never a panic or a 500.
func FuzzMessagesPost(f *testing.F) {
	e := newEnv(f)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	h := e.srv.Handler()
	for _, seed := range []string{
		"", "null", "[]", "{}", "[{}]", "[null]",
		"[" + dataMsg("s1", d.endpointID, humidityURN+":attributes", `{"humidity":1}`) + "]",
		"[" + responseMsg("s2", d.endpointID, "req", 200, "OK") + "]",
		"[" + dataMsg("s3", "0-OTHER", "urn:x", `{"a":[1]}`) + "]",
		`[{"clientId":"a","source":"` + d.endpointID + `","type":"ALERT","payload":{"format":"f","severity":"LOW","data":{"x":1e400}}}]`,
		`[{"clientId":"a","source":"` + d.endpointID + `","type":"RESOURCES_REPORT","payload":{"type":"JSON","value":{"reportType":"UPDATE","endpointName":"e","resources":[{"name":"n","path":"p","methods":"GET","status":"ADDED"}]}}}]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/iot/api/v2/messages?acceptBytes=4192", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+d.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted:
			var out []json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatalf("%d answer %q is not a JSON array: %v", rec.Code, rec.Body, err)
			}
		case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			var ae api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &ae); err != nil || ae.Status != rec.Code || ae.Message == "" {
				t.Fatalf("%d error body %q: %v", rec.Code, rec.Body, err)
			}
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}
