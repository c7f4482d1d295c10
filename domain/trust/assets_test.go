package trust

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	edPriv, edPub := ed25519Pair(t, 7)
	_, otherPub := ed25519Pair(t, 8)
	pkcs1Priv, pkcs1Pub, ecPriv, ecPub := legacyKeys(t)
	tests := []struct {
		name   string
		modify func(a *Assets)
		want   string // "" means valid
	}{
		{name: "minimal", modify: func(a *Assets) {}},
		{name: "full", modify: func(a *Assets) { *a = *fullAssets(t) }},
		{name: "mqtts without port", modify: func(a *Assets) { a.ServerURI = "mqtts://iot.example.com" }},
		{name: "http with trailing slash", modify: func(a *Assets) { a.ServerURI = "http://127.0.0.1:8080/" }},
		{name: "IPv6 host", modify: func(a *Assets) { a.ServerURI = "https://[::1]:443" }},
		{name: "ed25519 key pair", modify: func(a *Assets) { a.PrivateKey, a.PublicKey = edPriv, edPub }},
		{
			name:   "empty",
			modify: func(a *Assets) { *a = Assets{} },
			want: "server URI is missing; expected scheme://host:port, e.g. https://iot.example.com:443\n" +
				"client ID is missing\n" +
				"shared secret is missing",
		},
		{
			name:   "unsupported scheme",
			modify: func(a *Assets) { a.ServerURI = "ftp://iot.example.com:21" },
			want:   `server URI "ftp://iot.example.com:21": scheme "ftp" is not supported; expected https, mqtts, http or mqtt`,
		},
		{
			name:   "no scheme",
			modify: func(a *Assets) { a.ServerURI = "iot.example.com:443" },
			want:   `server URI "iot.example.com:443": scheme "iot.example.com" is not supported; expected https, mqtts, http or mqtt`,
		},
		{
			name:   "does not parse",
			modify: func(a *Assets) { a.ServerURI = "://iot.example.com" },
			want:   `server URI "://iot.example.com" does not parse (missing protocol scheme); expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "bad port",
			modify: func(a *Assets) { a.ServerURI = "https://iot.example.com:https" },
			want:   `server URI "https://iot.example.com:https" does not parse (invalid port ":https" after host); expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "port zero",
			modify: func(a *Assets) { a.ServerURI = "https://iot.example.com:0" },
			want:   `server URI "https://iot.example.com:0": port 0 is out of range 1..65535`,
		},
		{
			name:   "port too large",
			modify: func(a *Assets) { a.ServerURI = "https://iot.example.com:65536" },
			want:   `server URI "https://iot.example.com:65536": port 65536 is out of range 1..65535`,
		},
		{
			name:   "upper-case scheme",
			modify: func(a *Assets) { a.ServerURI = "HTTPS://iot.example.com:443" },
			want:   `server URI "HTTPS://iot.example.com:443": expected scheme://host:port, e.g. https://iot.example.com:443 with the scheme in lower case`,
		},
		{
			name:   "opaque",
			modify: func(a *Assets) { a.ServerURI = "https:iot.example.com" },
			want:   `server URI "https:iot.example.com": expected scheme://host:port, e.g. https://iot.example.com:443 with the scheme in lower case`,
		},
		{
			name:   "no host",
			modify: func(a *Assets) { a.ServerURI = "https://:443" },
			want:   `server URI "https://:443": host is missing; expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "user info",
			modify: func(a *Assets) { a.ServerURI = "https://admin:pw@iot.example.com:443" },
			want:   `server URI "https://admin:pw@iot.example.com:443": user information is not allowed; expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "path",
			modify: func(a *Assets) { a.ServerURI = "https://iot.example.com:443/iot/api/v2" },
			want:   `server URI "https://iot.example.com:443/iot/api/v2": path, query and fragment are not allowed; expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "query",
			modify: func(a *Assets) { a.ServerURI = "https://iot.example.com:443?x=1" },
			want:   `server URI "https://iot.example.com:443?x=1": path, query and fragment are not allowed; expected scheme://host:port, e.g. https://iot.example.com:443`,
		},
		{
			name:   "too long",
			modify: func(a *Assets) { a.ServerURI = "https://" + strings.Repeat("a", 70000) },
			want:   "server URI is 70008 bytes; the file format allows at most 65535",
		},
		{
			name:   "client ID with a line break",
			modify: func(a *Assets) { a.ClientID = "device\n1" },
			want:   `client ID "device\n1" contains a control character`,
		},
		{
			name:   "client ID not UTF-8",
			modify: func(a *Assets) { a.ClientID = "device-\xff" },
			want:   `client ID "device-\xff" is not valid UTF-8`,
		},
		{
			name:   "endpoint ID with a tab",
			modify: func(a *Assets) { a.EndpointID = "0-AE\t" },
			want:   `endpoint ID "0-AE\t" contains a control character`,
		},
		{
			name:   "shared secret too long",
			modify: func(a *Assets) { a.SharedSecret = make([]byte, 65536) },
			want:   "shared secret is 65536 bytes; the file format allows at most 65535",
		},
		{
			name: "trust anchor not a certificate",
			modify: func(a *Assets) {
				a.TrustAnchors = [][]byte{fixture(t, "ca.der"), []byte("-----BEGIN CERTIFICATE-----")}
			},
			want: "trust anchor 2 is not an X.509 DER certificate: x509: malformed certificate",
		},
		{
			name:   "private key without public key",
			modify: func(a *Assets) { a.PrivateKey = edPriv },
			want:   "private key is set but public key is missing; expected both (after activation) or neither",
		},
		{
			name:   "public key without private key",
			modify: func(a *Assets) { a.PublicKey = edPub },
			want:   "public key is set but private key is missing; expected both (after activation) or neither",
		},
		{
			name:   "keys do not match",
			modify: func(a *Assets) { a.PrivateKey, a.PublicKey = edPriv, otherPub },
			want:   "public key does not match the private key",
		},
		{
			name:   "keys swapped",
			modify: func(a *Assets) { a.PrivateKey, a.PublicKey = edPub, edPriv },
			want: "private key is not PKCS#8 DER: it is a public key\n" +
				"public key is not SubjectPublicKeyInfo DER: it is a private key",
		},
		{
			name:   "PKCS#1 keys",
			modify: func(a *Assets) { a.PrivateKey, a.PublicKey = pkcs1Priv, pkcs1Pub },
			want: "private key is not PKCS#8 DER: it is a PKCS#1 RSA key; convert it with: openssl pkcs8 -topk8 -nocrypt\n" +
				"public key is not SubjectPublicKeyInfo DER: it is a PKCS#1 RSA public key; convert it with: openssl rsa -RSAPublicKey_in -pubout",
		},
		{
			name:   "SEC 1 key",
			modify: func(a *Assets) { a.PrivateKey, a.PublicKey = ecPriv, ecPub },
			want:   "private key is not PKCS#8 DER: it is a SEC 1 EC key; convert it with: openssl pkcs8 -topk8 -nocrypt",
		},
		{
			name:   "garbage keys",
			modify: func(a *Assets) { a.PrivateKey, a.PublicKey = []byte{0x30, 0x03, 0x02, 0x01, 0x05}, []byte("junk") },
			want: "private key is not PKCS#8 DER: asn1: syntax error: sequence truncated\n" +
				"public key is not SubjectPublicKeyInfo DER: asn1: structure error: tags don't match",
		},
		{
			name: "devices",
			modify: func(a *Assets) {
				a.Devices = []ConnectedDevice{
					{HardwareID: "sensor-a", SharedSecret: []byte("a")},
					{HardwareID: "", SharedSecret: []byte("b")},
					{HardwareID: "sensor-a", SharedSecret: []byte("c")},
					{HardwareID: "sensor-d"},
					{HardwareID: "sensor\x00e", SharedSecret: []byte("e")},
					{HardwareID: "sensor-f", SharedSecret: make([]byte, 65530)},
				}
			},
			want: "device 2: hardware ID is missing\n" +
				`device 3: hardware ID "sensor-a" repeats device 1` + "\n" +
				"device 4: shared secret is missing\n" +
				`device 5: hardware ID "sensor\x00e" contains a control character` + "\n" +
				"device 6 is 65544 bytes; the file format allows at most 65535",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := minimalAssets()
			tt.modify(a)
			err := a.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %q, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want %q", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Fatalf("Validate() =\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	var a *Assets
	if err := a.Validate(); err == nil || err.Error() != "assets are nil" {
		t.Fatalf("Validate() = %v, want assets are nil", err)
	}
}

func TestStringHidesSecrets(t *testing.T) {
	a := fullAssets(t)
	a.SharedSecret = []byte("TOP-SECRET-GATEWAY")
	a.Devices[0].SharedSecret = []byte("TOP-SECRET-ICD")
	secrets := [][]byte{a.SharedSecret, a.Devices[0].SharedSecret, a.PrivateKey}
	var jsonLog, textLog bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("loaded", "assets", a, "device", a.Devices[0])
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("loaded", "assets", a, "device", a.Devices[0])
	var nilAssets *Assets
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("loaded", "assets", nilAssets)
	outputs := map[string]string{
		"slog JSON":  jsonLog.String(),
		"slog text":  textLog.String(),
		"String":     a.String(),
		"%v":         fmt.Sprintf("%v", a),
		"%+v":        fmt.Sprintf("%+v", a),
		"%#v":        fmt.Sprintf("%#v", a),
		"device %v":  fmt.Sprintf("%v", a.Devices[0]),
		"device %#v": fmt.Sprintf("%#v", a.Devices[0]),
		"devices %v": fmt.Sprintf("%v", a.Devices),
	}
	for name, out := range outputs {
		for _, s := range secrets {
			if bytes.Contains([]byte(out), s) || strings.Contains(out, fmt.Sprintf("%x", s)) || strings.Contains(out, fmt.Sprint(s)) {
				t.Errorf("%s prints a secret:\n%s", name, out)
			}
		}
	}
}

func TestMarshalJSONSummary(t *testing.T) {
	var nilAssets *Assets
	got, err := json.Marshal(map[string]any{"assets": fullAssets(t), "device": fullAssets(t).Devices[1], "none": nilAssets})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"assets":{"server_uri":"https://iot.example.com:8443","client_id":"gateway-1","endpoint_id":"0-AEBAAA",` +
		`"trust_anchors":2,"activated":true,"devices":2},"device":"sensor-b","none":null}`
	if string(got) != want {
		t.Fatalf("json =\n%s\nwant\n%s", got, want)
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		name string
		a    *Assets
		want string
	}{
		{name: "nil", a: nil, want: "<nil>"},
		{
			name: "empty",
			a:    &Assets{},
			want: "server URI:    missing\n" +
				"client ID:     missing\n" +
				"shared secret: missing\n" +
				"endpoint ID:   none (not activated)\n" +
				"trust anchors: 0\n" +
				"key pair:      none (not activated)\n" +
				"devices:       0\n",
		},
		{
			name: "damaged",
			a: &Assets{
				ServerURI: "https://h:1", ClientID: "c", SharedSecret: []byte("s"),
				TrustAnchors: [][]byte{[]byte("x")},
				PublicKey:    []byte("y"),
				Devices:      []ConnectedDevice{{HardwareID: "d"}},
			},
			want: "server URI:    https://h:1\n" +
				"client ID:     c\n" +
				"shared secret: set (hidden)\n" +
				"endpoint ID:   none (not activated)\n" +
				"trust anchors: 1\n" +
				"  1: not an X.509 certificate (1 bytes), SHA-256 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\n" +
				"private key:   missing\n" +
				"public key:    not a public key (1 bytes), SHA-256 a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa\n" +
				"devices:       1\n" +
				"  1: d, shared secret missing\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.String(); got != tt.want {
				t.Errorf("String() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestStringDescribesKeysAndCertificates(t *testing.T) {
	a := fullAssets(t)
	edPriv, edPub := ed25519Pair(t, 1)
	out := a.String()
	for _, want := range []string{
		"  1: CN=iotcloud test CA,O=iotnode test, expires 2126-11-02, SHA-256 ",
		"private key:   set (hidden)\n",
		"public key:    RSA 2048-bit, SHA-256 ",
		"  2: sensor-b, shared secret set (hidden)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("String() lacks %q:\n%s", want, out)
		}
	}
	a.PrivateKey, a.PublicKey = edPriv, edPub
	if out := a.String(); !strings.Contains(out, "public key:    Ed25519, SHA-256 ") {
		t.Errorf("String() lacks the Ed25519 key:\n%s", out)
	}
}

func TestIsMQTT(t *testing.T) {
	for uri, want := range map[string]bool{
		"mqtts://iot.example.com:8883": true,
		"mqtt://127.0.0.1:1883":        true,
		"https://iot.example.com:443":  false,
		"http://127.0.0.1:8080":        false,
		"":                             false,
	} {
		if got := IsMQTT(uri); got != want {
			t.Errorf("IsMQTT(%q) = %v, want %v", uri, got, want)
		}
	}
}
