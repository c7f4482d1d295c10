package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version returns the module version and VCS revision the binary was built
// from, as far as the build recorded them.
func version() (string, string) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)", ""
	}
	v, rev := info.Main.Version, ""
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v, rev
}

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "Print the version of iotcloud",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				v, rev := version()
				if rev != "" {
					v += " " + rev
				}
				fmt.Fprintf(m.stdout, "iotcloud %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			}
		},
	}
}
