package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is stamped at link time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/iotnode
//
// (scripts/build.sh does). It is never assigned at run time. When it is not
// stamped, versionString falls back to what the Go toolchain recorded.
var version = ""

// versionString returns the version and the VCS revision, as far as known.
func versionString() string {
	v, rev := version, ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev != "" {
		v += " " + rev
	}
	return v
}

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "Print the version of iotnode",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
			return func(ctx context.Context, m *Main, pos []string) error {
				fmt.Fprintf(m.stdout, "iotnode %s %s %s/%s\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			}
		},
	}
}
