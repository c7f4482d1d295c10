package plugins_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins"
	"github.com/iotnode/iotnode/ports"
)

// thermometer is a vendor's sensor with one output.
type thermometer struct{ offset float64 }

func (t *thermometer) Describe() plugins.Description {
	return plugins.Description{Name: "acme-th100", Version: "1.2.0", Readings: []string{"temperature"}, Outputs: []string{"calibrate"}}
}

func (t *thermometer) Read(ctx context.Context) ([]ports.Reading, error) {
	return []ports.Reading{{Name: "temperature", Value: 21.5 + t.offset}}, nil
}

func (t *thermometer) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	if output != "calibrate" {
		return fmt.Errorf("no output %q", output)
	}
	t.offset = args["offset"].Float()
	return nil
}

func (t *thermometer) Close() error { return nil }

// A vendor's main serves its Plugin; the node runs the executable.
func ExampleServe() {
	plugins.Serve(&thermometer{})
}

// The host starts a plugin, reads it, and stops it.
func ExampleOpen() {
	ctx := context.Background()
	th100, err := plugins.Open(ctx, "/usr/local/lib/iotnode/acme-th100", []string{"-bus", "1"}, plugins.Options{
		Logger:       slog.Default(),
		StartTimeout: 5 * time.Second,
	})
	if err != nil {
		fmt.Println(err) // start plugin /usr/local/lib/iotnode/acme-th100: ...
		return
	}
	defer th100.Close()

	readCtx, cancel := context.WithTimeout(ctx, 2*time.Second) // the plugin gets this deadline too
	defer cancel()
	readings, err := th100.Read(readCtx)
	switch {
	case errors.Is(err, plugins.ErrExited):
		// Crashed: Open it again later.
	case err != nil:
		fmt.Println(err) // the plugin's own error text
	default:
		fmt.Println(readings)
	}
}
