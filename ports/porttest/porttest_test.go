package porttest_test

import (
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestMemModelStore(t *testing.T) {
	porttest.ModelStore(t, func(t *testing.T) ports.ModelStore { return &porttest.MemModelStore{} },
		func(t *testing.T, old ports.ModelStore) ports.ModelStore { return old })
}

func TestMemTrustStore(t *testing.T) {
	porttest.TrustStore(t, func(t *testing.T, a *trust.Assets) ports.TrustStore { return porttest.NewMemTrustStore(a) })
}

func TestFakeClock(t *testing.T) {
	start := time.Unix(1000, 0)
	c := porttest.NewFakeClock(start)
	ch := c.After(time.Second)
	now := c.After(0)
	select {
	case <-now:
	default:
		t.Fatal("After(0) did not fire at once")
	}
	c.Advance(500 * time.Millisecond)
	select {
	case <-ch:
		t.Fatal("timer fired early")
	default:
	}
	if c.Waiters() != 1 {
		t.Fatalf("Waiters = %d, want 1", c.Waiters())
	}
	c.Advance(500 * time.Millisecond)
	if got := <-ch; !got.Equal(start.Add(time.Second)) {
		t.Fatalf("timer fired at %v", got)
	}
	if !c.Now().Equal(start.Add(time.Second)) {
		t.Fatalf("Now = %v", c.Now())
	}
	var sc porttest.SystemClock
	if sc.Now().IsZero() {
		t.Fatal("system clock is zero")
	}
	<-sc.After(time.Millisecond)
}
