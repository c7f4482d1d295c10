package ports

import (
	"context"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// Clock tells the time and makes timers, so that time-driven loops can be
// tested. Safe for concurrent use.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed; like
	// time.After, but the clock decides what "passed" means.
	After(d time.Duration) <-chan time.Time
}

// Reading is one raw value a sensor produced, named by the sensor (for
// example "temperature" or "humidity"); bindings map it to an attribute.
type Reading struct {
	Name  string
	Value any // bool, int64, float64, string or time.Time
}

// Sensor reads values from hardware (or a simulator or a plugin).
//
// Contract: Read blocks for at most the time the hardware needs, within ctx;
// it returns at least one reading or an error. An error marks the device
// unhealthy and is retried with backoff by the caller; it never takes the
// node down. Not safe for concurrent use unless the driver says so: the node
// calls each sensor from one goroutine.
type Sensor interface {
	Read(ctx context.Context) ([]Reading, error)
}

// Actuator drives an output: a writable attribute's new value (args holds
// one entry, "value") or an action's arguments.
//
// Contract: Actuate returns when the output took the value, or with an
// error that the caller reports to the cloud as a failed request (500).
// Not safe for concurrent use unless the driver says so.
type Actuator interface {
	Actuate(ctx context.Context, output string, args map[string]model.Value) error
}
