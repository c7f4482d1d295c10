package activation

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// FuzzAnswer feeds Result every answer the JSON decoder accepts. It must not
// panic; an answer it accepts is ACTIVATED with an endpoint ID, and any
// certificate it keeps is X.509 DER.
func FuzzAnswer(f *testing.F) {
	der := testCert(f)
	f.Add([]byte(`{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":1740830400000}`))
	f.Add([]byte(`{"endpointId":"ep-1","endpointState":"ACTIVATED","certificate":"` + base64.StdEncoding.EncodeToString(der) + `"}`))
	f.Add([]byte(`{"endpointId":"ep-1","endpointState":"ACTIVATED","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`))
	f.Add([]byte(`{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":"1e3"}`))
	f.Add([]byte(`{"endpointState":"PENDING"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Answer
		if json.Unmarshal(data, &a) != nil {
			return
		}
		r, err := a.Result()
		if err != nil {
			return
		}
		if a.EndpointState != stateActivated || r.EndpointID == "" {
			t.Errorf("accepted %s", data)
		}
		if r.Certificate != nil {
			if r.CertificateErr != nil {
				t.Errorf("kept a certificate and explained why not: %v", r.CertificateErr)
			}
			if _, err := x509.ParseCertificate(r.Certificate); err != nil {
				t.Errorf("kept a certificate that does not parse: %v", err)
			}
		}
	})
}

// FuzzCertificateDER: certificateDER returns X.509 DER or an error.
func FuzzCertificateDER(f *testing.F) {
	der := testCert(f)
	f.Add(base64.StdEncoding.EncodeToString(der))
	f.Add("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END CERTIFICATE-----\n")
	f.Add("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := certificateDER(s)
		if (err == nil) == (got == nil) {
			t.Fatalf("certificateDER = %x, %v; want DER or an error", got, err)
		}
		if err == nil {
			if _, perr := x509.ParseCertificate(got); perr != nil {
				t.Errorf("returned %x that is not X.509 DER", got)
			}
		}
	})
}
