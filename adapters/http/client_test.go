package http_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestNew(t *testing.T) {
	valid := func() *trust.Assets {
		return &trust.Assets{ServerURI: "https://iot.example.com:443", ClientID: activationID, SharedSecret: []byte(sharedSecret)}
	}
	with := func(edit func(a *trust.Assets)) ports.TrustStore {
		a := valid()
		edit(a)
		return porttest.NewMemTrustStore(a)
	}
	tests := []struct {
		name    string
		cfg     httpadapter.Config
		wantErr string
		wantLog string
	}{
		{name: "valid", cfg: httpadapter.Config{Trust: porttest.NewMemTrustStore(valid())}, wantErr: "<nil>",
			wantLog: "the provisioning file has no trust anchors: verifying the server with the system certificate pool"},
		{name: "every config problem at once", cfg: httpadapter.Config{Timeout: -time.Second, LongPollOffset: -1, PingAfter: -1, PingTimeout: -time.Millisecond},
			wantErr: "new https transport: field Trust is nil; expected the device's trust store (the opened provisioning file)\n" +
				"field Timeout is -1s; expected 0 (default 15s) or more\n" +
				"field LongPollOffset is -1ns; expected 0 (default 100ms) or more\n" +
				"field PingAfter is -1ns; expected 0 (default 10s) or more\n" +
				"field PingTimeout is -1ms; expected 0 (default 5s) or more"},
		{name: "trust store fails", cfg: httpadapter.Config{Trust: &porttest.MemTrustStore{}},
			wantErr: "new https transport: load trusted assets: trusted assets: not found"},
		{name: "mqtts", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.ServerURI = "mqtts://iot.example.com:8883" })},
			wantErr: `new https transport: server URI "mqtts://iot.example.com:8883" of the provisioning file uses mqtts: this is the HTTPS transport; use the MQTT transport for this file, or provision an https URI`},
		{name: "unknown scheme", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.ServerURI = "ftp://iot.example.com" })},
			wantErr: `new https transport: server URI "ftp://iot.example.com" of the provisioning file: scheme "ftp" is not supported; expected https`},
		{name: "no host", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.ServerURI = "iot.example.com" })},
			wantErr: `new https transport: server URI "iot.example.com" of the provisioning file is not scheme://host:port`},
		{name: "path", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.ServerURI = "https://iot.example.com/iot" })},
			wantErr: `new https transport: server URI "https://iot.example.com/iot" of the provisioning file has a path or query; expected scheme://host:port`},
		{name: "bad trust anchor", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.TrustAnchors = [][]byte{certDER(t), {0x30, 0x03, 1, 2, 3}} })},
			wantErr: "new https transport: trust anchor 2 of the provisioning file is not an X.509 DER certificate: x509: malformed tbs certificate"},
		{name: "plain http warns", cfg: httpadapter.Config{Trust: with(func(a *trust.Assets) { a.ServerURI = "http://127.0.0.1:8080" })},
			wantErr: "<nil>",
			wantLog: "the server URI uses plain http: tokens and data travel unencrypted; use it only for local experiments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			tt.cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			c, err := httpadapter.New(tt.cfg)
			if errText(err) != tt.wantErr {
				t.Fatalf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if err != nil {
				return
			}
			defer c.Close()
			if !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("logs = %s\n want %q", logs.String(), tt.wantLog)
			}
		})
	}
}

// TestTrustAnchors proves that only the provisioned anchors are trusted.
func TestTrustAnchors(t *testing.T) {
	other, _ := selfSigned(t, "another cloud", time.Hour)
	tests := []struct {
		name    string
		anchors func(fc *fakeCloud) [][]byte
		wantErr string
	}{
		{name: "the cloud's own certificate", anchors: func(fc *fakeCloud) [][]byte { return [][]byte{other, fc.srv.Certificate().Raw} },
			wantErr: "<nil>"},
		{name: "another anchor", anchors: func(fc *fakeCloud) [][]byte { return [][]byte{other} },
			wantErr: "exchange messages: get access token: the certificate of SERVER is not trusted: x509: certificate signed by unknown authority; expected a certificate for this host that chains to a trust anchor of the provisioning file"},
		{name: "no anchor: system pool", anchors: func(fc *fakeCloud) [][]byte { return nil },
			wantErr: "exchange messages: get access token: the certificate of SERVER is not trusted: x509: certificate signed by unknown authority; expected a certificate for this host that chains to a trust anchor of the provisioning file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("POST /iot/api/v2/messages", emptyMessages)
			a := fc.assets(true)
			a.TrustAnchors = tt.anchors(fc)
			c := fc.client(true, nil, func(cfg *httpadapter.Config) { cfg.Trust = porttest.NewMemTrustStore(a) })
			_, err := c.Exchange(t.Context(), nil, 100, 0)
			if want := strings.ReplaceAll(tt.wantErr, "SERVER", fc.srv.URL); errText(err) != want {
				t.Errorf("error = %s\n want %s", errText(err), want)
			}
			if ports.IsPermanent(err) {
				t.Errorf("a certificate problem is permanent; the dispatcher would drop messages")
			}
		})
	}
}

// TestUnreachable proves a cloud that does not answer is a transient error
// with no status.
func TestUnreachable(t *testing.T) {
	fc := newFakeCloud(t)
	c := fc.client(true, nil)
	fc.srv.Close()
	_, err := c.Exchange(t.Context(), nil, 100, 0)
	var ce *ports.CloudError
	if !errors.As(err, &ce) || ce.Status != 0 || ce.Permanent || !strings.Contains(err.Error(), "connection refused") ||
		!strings.HasPrefix(err.Error(), `exchange messages: get access token: Post "`+fc.srv.URL+`/iot/api/v2/oauth2/token": dial tcp`) {
		t.Errorf("error = %v, want a transient CloudError naming the token URL and the refused connection", err)
	}
}

// TestNotTLS proves a plain HTTP server behind an https URI is reported
// as such.
func TestNotTLS(t *testing.T) {
	fc := newFakeCloud(t)
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	a := fc.assets(true)
	a.ServerURI = strings.Replace(plain.URL, "http://", "https://", 1)
	c := fc.client(true, nil, func(cfg *httpadapter.Config) { cfg.Trust = porttest.NewMemTrustStore(a) })
	_, err := c.Exchange(t.Context(), nil, 100, 0)
	want := `exchange messages: get access token: Post "` + a.ServerURI + `/iot/api/v2/oauth2/token": http: server gave HTTP response to HTTPS client`
	if errText(err) != want || ports.IsPermanent(err) {
		t.Errorf("error = %s (permanent %v)\n want %s, transient", errText(err), ports.IsPermanent(err), want)
	}
}
