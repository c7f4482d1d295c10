package fsstore_test

import (
	"context"
	"fmt"
	"io/fs"
	"log"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultfs"
)

// faultFS adapts a *faultfs.FS to fsstore.FS: its OpenFile returns the
// concrete *faultfs.File.
type faultFS struct{ *faultfs.FS }

func (f faultFS) OpenFile(name string, flag int, perm fs.FileMode) (fsstore.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return file, nil
}

// An outbox on a file system that loses power: what Add acknowledged comes
// back, what End delivered does not.
func ExampleOpenOutbox_powerLoss() {
	disk := faultfs.New(faultfs.Options{TearLastWrite: true})
	outbox, err := fsstore.OpenOutbox("/data/outbox", fsstore.OutboxOptions{FS: faultFS{disk}})
	if err != nil {
		log.Fatal(err)
	}
	reading := func(id string) message.Message {
		return message.Message{
			ClientID: id, Source: "0-AEBAAA", Type: message.TypeData,
			Priority: message.PriorityMedium, Reliability: message.GuaranteedDelivery,
			EventTime: time.UnixMilli(1764201600000),
			Data:      &message.Data{Format: "urn:com:example:thermometer:attributes", Fields: []message.Field{{Name: "temp", Value: 21.5}}},
		}
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		if _, err := outbox.Add(context.Background(), reading(id)); err != nil {
			log.Fatal(err)
		}
	}
	batch, err := outbox.Begin(1, 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := outbox.End(batch, []int{0}); err != nil { // the cloud accepted m1
		log.Fatal(err)
	}

	disk = disk.Restart() // the power fails and comes back
	outbox, err = fsstore.OpenOutbox("/data/outbox", fsstore.OutboxOptions{FS: faultFS{disk}})
	if err != nil {
		log.Fatal(err)
	}
	defer outbox.Close()
	batch, err = outbox.Begin(10, 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range batch.Messages {
		fmt.Println(m.ClientID)
	}
	// Output:
	// m2
	// m3
}
