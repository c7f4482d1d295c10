package pki_test

import (
	"fmt"
	"os"
	"time"

	"github.com/iotnode/iotnode/cloud/pki"
)

// Ensure creates the CA and the server certificate on first use and reuses
// them afterwards; a new host name re-issues only the server certificate.
func ExampleEnsure() {
	dir, _ := os.MkdirTemp("", "pki-example")
	defer os.RemoveAll(dir)

	first, err := pki.Ensure(dir, nil, time.Now())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("created CA:", first.CreatedCA, "names:", first.Leaf.DNSNames, first.Leaf.IPAddresses)

	second, _ := pki.Ensure(dir, []string{"iot.example.com"}, time.Now())
	fmt.Println("created CA:", second.CreatedCA, "re-issued:", second.Issued, "names:", second.Leaf.DNSNames)
	// Output:
	// created CA: true names: [localhost] [127.0.0.1 ::1]
	// created CA: false re-issued: true names: [localhost iot.example.com]
}
