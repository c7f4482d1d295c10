package cloud

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if a goroutine of this package outlives the
// tests (every Server was closed, so none may remain).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leak := leakedGoroutines(); leak != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked by package cloud:\n%s\n", leak)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines() string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "iotnode/cloud.(*Server)") || strings.Contains(g, "iotnode/cloud.(*MQTT)") || strings.Contains(g, "iotnode/cloud/store.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
