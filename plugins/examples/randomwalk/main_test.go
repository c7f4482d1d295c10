package main

import (
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins"
)

func TestWalk(t *testing.T) {
	w := newWalk(20, 0.5, rand.New(rand.NewPCG(1, 2)))
	prev := 20.0
	for range 100 {
		rs, err := w.Read(t.Context())
		if err != nil || len(rs) != 1 || rs[0].Name != "temperature" {
			t.Fatalf("read: %v, %v", rs, err)
		}
		v := rs[0].Value.(float64)
		if math.Abs(v-prev) > 0.5 {
			t.Fatalf("moved from %v to %v, more than the step", prev, v)
		}
		prev = v
	}
	if err := w.Actuate(t.Context(), "reset", nil); err != nil || w.value != 20 {
		t.Errorf("reset: %v, value %v", err, w.value)
	}
	s, _ := model.String("hot")
	for _, tt := range []struct {
		output string
		args   map[string]model.Value
		want   string
	}{
		{"reset", map[string]model.Value{"value": s}, `reset: value "hot" is a STRING (expected a number)`},
		{"heat", nil, `no output "heat" (expected reset)`},
	} {
		if err := w.Actuate(t.Context(), tt.output, tt.args); err == nil || err.Error() != tt.want {
			t.Errorf("actuate %s: %v, want %s", tt.output, err, tt.want)
		}
	}
}

// The example as vendors ship it: an executable the host starts.
func TestAsPlugin(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "randomwalk")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	c, err := plugins.Open(t.Context(), exe, []string{"-start", "30", "-step", "0.1", "-seed", "7"}, plugins.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := c.Description(); d.Name != "randomwalk" || d.Version != "1.0.0" {
		t.Errorf("description %+v", d)
	}
	read := func() float64 {
		t.Helper()
		rs, err := c.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return rs[0].Value.(float64)
	}
	if v := read(); math.Abs(v-30) > 0.1 {
		t.Errorf("first read %v, want 30 ± 0.1", v)
	}
	n, _ := model.Number(-5)
	if err := c.Actuate(t.Context(), "reset", map[string]model.Value{"value": n}); err != nil {
		t.Fatal(err)
	}
	if v := read(); math.Abs(v+5) > 0.1 {
		t.Errorf("read after reset to -5: %v", v)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}
