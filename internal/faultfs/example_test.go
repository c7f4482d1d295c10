package faultfs_test

import (
	"fmt"
	"log"
	"os"

	"github.com/iotnode/iotnode/internal/faultfs"
)

func ExampleFS_Restart() {
	fsys := faultfs.New(faultfs.Options{})
	if err := fsys.MkdirAll("/data", 0o700); err != nil {
		log.Fatal(err)
	}
	f, err := fsys.OpenFile("/data/log", os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = f.Write([]byte("synced "))
	_ = f.Sync()
	_ = fsys.SyncDir("/data") // the file's name is durable too
	_, _ = f.Write([]byte("not synced"))

	// Crash right after the next operation that changes something.
	fsys.CrashAfter(1)
	_ = f.Sync() // completes: then the power goes
	_, err = f.Write([]byte("too late"))
	fmt.Println(err)

	after := fsys.Restart()
	b, _ := after.ReadFile("/data/log")
	fmt.Printf("%q\n", b)
	// Output:
	// write /data/log: file system crashed
	// "synced not synced"
}
