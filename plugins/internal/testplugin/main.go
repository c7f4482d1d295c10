// Command testplugin is the plugin the tests of package plugins run: its
// readings have every type, and its outputs echo arguments or environment
// variables (the names of the arguments), fail, sleep
// until the deadline, write to standard error, panic or exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins"
	"github.com/iotnode/iotnode/ports"
)

func main() {
	version := flag.String("version", "1.0.0", "the version Describe reports")
	exitBefore := flag.Int("exit-before", -1, "exit with this status before serving")
	hang := flag.Bool("hang", false, "never serve")
	badDescribe := flag.Bool("bad-describe", false, "describe a reading twice")
	flag.Parse()
	fmt.Fprintln(os.Stderr, "testplugin: starting")
	switch {
	case *exitBefore >= 0:
		os.Exit(*exitBefore)
	case *hang:
		select {}
	}
	p := &testPlugin{version: *version, echo: "none", slept: "never"}
	if *badDescribe {
		p.extra = "bool"
	}
	plugins.Serve(p)
}

type testPlugin struct {
	version, extra string
	echo, slept    string
	badRead        bool
}

func (p *testPlugin) Describe() plugins.Description {
	readings := []string{"bool", "int", "float", "string", "time", "echo", "slept"}
	if p.extra != "" {
		readings = append(readings, p.extra)
	}
	return plugins.Description{
		Name: "testplugin", Version: p.version, Readings: readings,
		Outputs: []string{"echo", "env", "fail", "sleep", "stderr", "bad_read", "panic", "exit"},
	}
}

func (p *testPlugin) Read(ctx context.Context) ([]ports.Reading, error) {
	if p.badRead {
		return []ports.Reading{{Name: "bad", Value: 7}}, nil
	}
	return []ports.Reading{
		{Name: "bool", Value: true},
		{Name: "int", Value: int64(-42)},
		{Name: "float", Value: 3.25},
		{Name: "string", Value: "héllo, wörld"},
		{Name: "time", Value: time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)},
		{Name: "echo", Value: p.echo},
		{Name: "slept", Value: p.slept},
	}, nil
}

func (p *testPlugin) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	switch output {
	case "echo":
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(args)) {
			parts = append(parts, name+"="+string(args[name].Type())+":"+args[name].String())
		}
		p.echo = strings.Join(parts, " ")
	case "env":
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(args)) {
			value, ok := os.LookupEnv(name)
			parts = append(parts, fmt.Sprintf("%s=%q (%t)", name, value, ok))
		}
		p.echo = strings.Join(parts, " ")
	case "fail":
		return errors.New(args["reason"].Str())
	case "sleep":
		_, hasDeadline := ctx.Deadline()
		<-ctx.Done()
		p.slept = fmt.Sprintf("%v (deadline: %t)", ctx.Err(), hasDeadline)
		return ctx.Err()
	case "stderr":
		fmt.Fprintln(os.Stderr, args["line"].Str())
	case "bad_read":
		p.badRead = true
	case "panic":
		panic("boom")
	case "exit":
		os.Exit(int(args["code"].Int()))
	default:
		return fmt.Errorf("no output %q", output)
	}
	return nil
}

func (p *testPlugin) Close() error { return nil }
