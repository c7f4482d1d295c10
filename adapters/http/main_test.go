package http_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: the client starts
// none, and Close releases the transport's idle connections.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
