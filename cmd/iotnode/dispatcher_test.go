package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/device"
)

// The dispatcher keys reach the device's options: deviceOptions (what
// openNode passes to the device) carries each key to its device.With*
// option, which the device then checks against its own limits. A config
// that skipped Validate shows it: the device refuses each bad value under
// the option the key maps to, with the text Validate gives the key. Keys
// left out keep the library's defaults (no option is refused).
func TestDispatcherOptions(t *testing.T) {
	tests := []struct {
		name, yaml  string
		wantDevice  string // the device's refusal; "" when it accepts the options
		wantProblem string // Validate's problem; "" when none
	}{
		{"absent", "", "", ""},
		{"all set", `dispatcher:
  batch_size: 500
  batch_bytes: 1048576
  max_in_flight: 1
  batch_delay: 0s
  backoff_base: 2s
  backoff_cap: 2m
  long_polling: true
  long_poll_timeout: 50s
  polling_interval: 10s
`, "", ""},
		// With long polling on, a 0s timeout would be refused (below): so
		// long_polling reached the device.
		{"long polling off", "dispatcher: {long_polling: false, long_poll_timeout: 0s}\n", "", ""},
		{"batch_size", "dispatcher: {batch_size: 0}\n",
			"option WithMaxMessagesPerConnection: 0, expected at least 1", "dispatcher.batch_size: 0, expected at least 1"},
		{"batch_bytes", "dispatcher: {batch_bytes: 1023}\n",
			"option WithMaxBatchBytes: 1023, expected at least 1024", "dispatcher.batch_bytes: 1023, expected at least 1024"},
		{"max_in_flight", "dispatcher: {max_in_flight: 0}\n",
			"option WithMaxInFlight: 0, expected at least 1", "dispatcher.max_in_flight: 0, expected at least 1"},
		{"batch_delay", "dispatcher: {batch_delay: -1ms}\n",
			"option WithBatchDelay: -1ms, expected 0 or more", "dispatcher.batch_delay: -1ms, expected 0 or more"},
		{"backoff_base", "dispatcher: {backoff_base: 0s}\n",
			"option WithBackoff base: 0s, expected more than 0", "dispatcher.backoff_base: 0s, expected more than 0"},
		{"backoff_cap", "dispatcher: {backoff_cap: 500ms}\n",
			"option WithBackoff: limit 500ms is below base 1s, expected limit >= base",
			"dispatcher.backoff_cap: 500ms is below backoff_base 1s (the default), expected at least backoff_base"},
		{"long_poll_timeout", "dispatcher: {long_poll_timeout: 0s}\n",
			"option WithLongPolling timeout: 0s, expected more than 0", "dispatcher.long_poll_timeout: 0s, expected more than 0"},
		{"polling_interval", "dispatcher: {polling_interval: 0s}\n",
			"option WithPollingInterval: 0s, expected more than 0", "dispatcher.polling_interval: 0s, expected more than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			c, err := loadConfig(write(t, dir, "iotnode.yaml", validConfig+tt.yaml), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.applyDefaults()

			// device.Config{} lacks its adapters: the device reports them
			// with the options, which is all this needs.
			_, err = device.NewDirectlyConnectedDevice(device.Config{}, deviceOptions(c, nodeDeps{})...)
			var refused []string
			for _, line := range strings.Split(err.Error(), "\n") {
				if _, opt, ok := strings.Cut(line, "option "); ok {
					refused = append(refused, "option "+opt)
				}
			}
			switch {
			case tt.wantDevice == "" && len(refused) > 0:
				t.Errorf("the device refused the options: %q", refused)
			case tt.wantDevice != "" && (len(refused) != 1 || refused[0] != tt.wantDevice):
				t.Errorf("the device refused %q, want only %q", refused, tt.wantDevice)
			}

			err = c.Validate(builtinDrivers(driverDeps{clock: systemClock{}}), "")
			var ce *ConfigError
			switch {
			case tt.wantProblem == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantProblem != "" && (!errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0] != tt.wantProblem):
				t.Errorf("Validate: %v, want the one problem %q", err, tt.wantProblem)
			}
		})
	}
}
