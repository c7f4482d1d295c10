package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/iotnode/iotnode/domain/model"
)

// FuzzConfig feeds arbitrary bytes to the config decoder and the checks that
// need no files: they report problems, never panic.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	f.Add([]byte("devices: [{bindings: {temp: {scale: 0}}, settings: {signals: {t: {waveform: steps, values: [1], every: 1s}}}}]"))
	f.Add([]byte("logging: {levels: {a.b: debug}}\nmetrics: {listen: '[::1]:9100'}\n"))
	f.Add([]byte("devices: 5\n"))
	temp, err := model.Parse(mustModelF(f, "temperature_sensor.json"))
	if err != nil {
		f.Fatal(err)
	}
	drivers := builtinDrivers(driverDeps{clock: systemClock{}})
	dir := f.TempDir()
	path := filepath.Join(dir, "iotnode.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _ := loadConfig(path, nil, nil)
		if c == nil {
			return
		}
		c.applyDefaults()
		var ps problems
		c.drivers = make([]prepared, len(c.Devices))
		c.validateLogging(&ps)
		c.validateMetrics(&ps)
		for i := range c.Devices {
			c.validateDriver(&ps, "devices", i, drivers)
		}
		_ = c.validateModels(map[string]*model.DeviceModel{temp.URN: temp})
	})
}

func mustModelF(f *testing.F, name string) []byte {
	b, err := demoModels.ReadFile("models/" + name)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
