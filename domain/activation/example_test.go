package activation_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/iotnode/iotnode/domain/activation"
)

// A transport decodes the policy answer its own way, then checks it.
func ExamplePolicy_Check() {
	var p activation.Policy
	if err := json.Unmarshal([]byte(`{"keyType":"RSA","keySize":2048}`), &p); err != nil {
		fmt.Println("the answer is not", activation.PolicyShape+":", err)
		return
	}
	fmt.Println(p.Check())
	// Output:
	// the policy lacks hashAlgorithm; expected a policy {"keyType","hashAlgorithm","keySize"}
}

// A device activates directly: it generates a key pair, and Body asks it to
// sign the proof of possession. The private key stays with the caller.
func ExampleDirect_Body() {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		fmt.Println(err)
		return
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	d := activation.Direct{
		PublicKey:  spki,
		ModelURNs:  []string{"urn:com:example:thermostat"},
		Attributes: map[string]string{"serialNumber": "42"},
		Sign: func(data []byte) ([]byte, error) {
			sum := sha256.Sum256(data)
			return rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
		},
	}
	body, err := d.Body("thermostat-17", []byte("s3cr3t"), "") // no policy: SHA256withRSA
	if err != nil {
		fmt.Println(err)
		return
	}
	var b struct {
		Info struct {
			Subject    string            `json:"subject"`
			Attributes map[string]string `json:"attributes"`
		} `json:"certificationRequestInfo"`
		SignatureAlgorithm string   `json:"signatureAlgorithm"`
		DeviceModels       []string `json:"deviceModels"`
	}
	_ = json.Unmarshal(body, &b)
	fmt.Println(b.Info.Subject, b.Info.Attributes, b.SignatureAlgorithm, b.DeviceModels)
	// Output:
	// thermostat-17 map[serialNumber:42] SHA256withRSA [urn:com:example:thermostat]
}

// A gateway activates one of its devices with a flat body.
func ExampleIndirect_Body() {
	body, err := activation.Indirect{
		HardwareID: "sensor-3",
		ModelURNs:  []string{"urn:com:example:humidity"},
		Metadata:   map[string]string{"manufacturer": "ACME"},
	}.Body()
	fmt.Println(string(body), err)

	_, err = activation.Indirect{HardwareID: "sensor-4", Metadata: map[string]string{"signature": "x"}}.Body()
	fmt.Println(err)
	// Output:
	// {"deviceModels":["urn:com:example:humidity"],"hardwareId":"sensor-3","manufacturer":"ACME"} <nil>
	// metadata key "signature" is reserved by the activation request; rename it
}

// The answer of either activation: an unusable certificate is no failure.
func ExampleAnswer_Result() {
	var a activation.Answer
	_ = json.Unmarshal([]byte(`{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":1740830400000,"certificate":"???"}`), &a)
	r, err := a.Result()
	fmt.Println(r.EndpointID, r.ActivationTime.UTC().Format("2006-01-02T15:04:05Z"), r.Certificate == nil, r.CertificateErr, err)

	_ = json.Unmarshal([]byte(`{"endpointId":"ep-1","endpointState":"PENDING"}`), &a)
	_, err = a.Result()
	fmt.Println(err)
	// Output:
	// ep-1 2025-03-01T12:00:00Z true it is neither PEM nor base64 DER <nil>
	// endpointState is "PENDING"; expected "ACTIVATED"
}
