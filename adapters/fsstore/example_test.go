package fsstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

func ExampleOpenTrustStore() {
	dir, err := os.MkdirTemp("", "fsstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The cloud (or `iotcloud`) writes the provisioning file; here we make one.
	path := filepath.Join(dir, "device.conf")
	data, err := trust.EncodeV2(&trust.Assets{
		ServerURI:    "https://127.0.0.1:8443",
		ClientID:     "thermometer-1",
		SharedSecret: []byte("s3cret"),
	}, "changeit", rand.Reader, trust.WithIterations(trust.MinIterations))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		log.Fatal(err)
	}

	if _, err := fsstore.OpenTrustStore(path, "wrong"); errors.Is(err, trust.ErrPassphrase) {
		fmt.Println("wrong passphrase refused")
	}
	// Low iterations keep this example fast; production keeps the default.
	store, err := fsstore.OpenTrustStore(path, "changeit", fsstore.WithKDFIterations(trust.MinIterations))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	a, err := store.Load()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(a.ClientID, a.EndpointID == "")

	// After activation the endpoint ID goes into the same file.
	a.EndpointID = "0-AEBAAA"
	if err := store.Save(a); err != nil {
		log.Fatal(err)
	}
	fi, _ := os.Stat(path)
	fmt.Printf("%s %04o\n", store.Format(), fi.Mode().Perm())
	// Output:
	// wrong passphrase refused
	// thermometer-1 true
	// v2 0600
}

func ExampleNewModelStore() {
	dir, err := os.MkdirTemp("", "fsstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := fsstore.NewModelStore(filepath.Join(dir, "models"))
	if err != nil {
		log.Fatal(err)
	}
	const urn = "urn:com:example:thermometer"
	if _, err := store.Load(urn); errors.Is(err, ports.ErrNotFound) {
		fmt.Println("not stored yet: fetch it from the cloud")
	}
	m, err := model.Parse([]byte(`{"urn":"urn:com:example:thermometer","name":"Thermometer",
		"attributes":[{"name":"temp","type":"NUMBER"}]}`))
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Save(m); err != nil {
		log.Fatal(err)
	}
	fmt.Println(fsstore.ModelFileName(urn))
	got, err := store.Load(urn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Name)
	// Output:
	// not stored yet: fetch it from the cloud
	// dm-urn%3Acom%3Aexample%3Athermometer.json
	// Thermometer
}

func ExampleOpenOutbox() {
	dir, err := os.MkdirTemp("", "fsstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	outbox, err := fsstore.OpenOutbox(filepath.Join(dir, "outbox.db"), fsstore.OutboxOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer outbox.Close()

	reading := func(id string, r message.Reliability) message.Message {
		return message.Message{
			ClientID: id, Source: "0-AEBAAA", Type: message.TypeData,
			Priority: message.PriorityMedium, Reliability: r,
			EventTime: time.UnixMilli(1764201600000),
			Data:      &message.Data{Format: "urn:com:example:thermometer:attributes", Fields: []message.Field{{Name: "temp", Value: 21.5}}},
		}
	}
	// When Add returns, the guaranteed message is on disk.
	if _, err := outbox.Add(context.Background(), reading("m1", message.GuaranteedDelivery), reading("m2", message.BestEffort)); err != nil {
		log.Fatal(err)
	}
	// The dispatcher takes a batch, sends it, and ends it with what the cloud accepted.
	batch, err := outbox.Begin(100, 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range batch.Messages {
		fmt.Println(m.ClientID, m.Reliability)
	}
	if err := outbox.End(batch, []int{0}); err != nil { // m2 was not accepted: it comes back
		log.Fatal(err)
	}
	st := outbox.Stats()
	fmt.Println(st.Queued, st.Guaranteed)
	// Output:
	// m1 GUARANTEED_DELIVERY
	// m2 BEST_EFFORT
	// 1 0
}
