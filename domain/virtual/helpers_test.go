package virtual_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

const ep = "ep-1"

// loadModel parses a model from testdata (ours) or the shared example models.
func loadModel(t testing.TB, file string) *model.DeviceModel {
	t.Helper()
	path := filepath.Join("testdata", file)
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join("../../testdata/devicemodels", file)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse(data)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return m
}

// seq returns a newID that yields id-1, id-2, ...
func seq() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("id-%d", n)
	}
}

func newDevice(m *model.DeviceModel, opts ...virtual.Option) *virtual.Device {
	return virtual.New(ep, m, seq(), opts...)
}

func thermostat(t testing.TB, opts ...virtual.Option) *virtual.Device {
	return virtual.New(ep, loadModel(t, "thermostat.json"), seq(), opts...)
}

// request returns a REQUEST from "cloud" to ep.
func request(method, url, body string, headers map[string][]string) *message.Message {
	return &message.Message{
		ID:          "req-1",
		ClientID:    "req-client-1",
		Source:      "cloud",
		Destination: ep,
		Type:        message.TypeRequest,
		Request:     &message.Request{Method: method, URL: url, Headers: headers, Body: []byte(body)},
	}
}

// fields shows the fields of a DATA or ALERT payload as "name=value ...".
func fields(fs []message.Field) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch v := f.Value.(type) {
		case time.Time:
			fmt.Fprintf(&b, "%s=%d", f.Name, v.UnixMilli())
		case string:
			fmt.Fprintf(&b, "%s=%q", f.Name, v)
		default:
			fmt.Fprintf(&b, "%s=%v", f.Name, v)
		}
	}
	return b.String()
}

// changes shows changes as "name: old -> new, ...".
func changes(cs []virtual.Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s: %v -> %v", c.Name, c.Old, c.New)
	}
	return strings.Join(parts, ", ")
}

// invocation shows an invocation as "name(arg=value, ...)", arguments sorted.
func invocation(inv *virtual.Invocation) string {
	if inv == nil {
		return ""
	}
	var args []string
	for k, v := range inv.Args {
		args = append(args, k+"="+v.String())
	}
	slices.Sort(args)
	return inv.Action + "(" + strings.Join(args, ", ") + ")"
}

// values shows a Values map sorted by name.
func values(vs map[string]model.Value) string {
	var parts []string
	for k, v := range vs {
		parts = append(parts, k+"="+v.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
