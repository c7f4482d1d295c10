package mqtt_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: Close stops the
// connection's goroutines, and the test brokers are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
