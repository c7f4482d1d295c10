package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/iotnode/iotnode/adapters/fsstore"
)

func trustShowCommand() *command {
	var passFile string
	var insecure bool
	return &command{
		name: "trust show", args: "FILE",
		summary: "Show the non-secret fields of a provisioning file",
		help: `
Prints the server URI, the activation and endpoint ids, the trust anchors
(subject, expiry, SHA-256 fingerprint), whether a key pair is present and the
indirectly connected devices. Shared secrets and the private key are never
printed, only whether they are set.

The passphrase comes from --passphrase-file or the environment variable
IOTNODE_PASSPHRASE.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
			fs.StringVar(&passFile, "passphrase-file", "", "`FILE` whose first line is the passphrase (or env "+EnvPassphrase+")")
			fs.BoolVar(&insecure, "allow-insecure-permissions", false, "read the file even if group or others may read it")
			return func(ctx context.Context, m *Main, pos []string) error {
				if err := wantArgs(pos, 1, "the provisioning FILE"); err != nil {
					return err
				}
				pass, err := passphrase(m, passFile)
				if err != nil {
					return err
				}
				var opts []fsstore.TrustOption
				if insecure {
					opts = append(opts, fsstore.WithInsecurePermissions())
				}
				ts, err := fsstore.OpenTrustStore(pos[0], pass, opts...)
				if err != nil {
					return err
				}
				defer ts.Close()
				a, err := ts.Load()
				if err != nil {
					return err
				}
				fmt.Fprintf(m.stdout, "file:          %s (format %s)\n", ts.Path(), ts.Format())
				fmt.Fprint(m.stdout, a.String())
				return nil
			}
		},
	}
}

// passphrase returns the passphrase from file (its first line) or from the
// environment.
func passphrase(m *Main, file string) (string, error) {
	if file != "" {
		return readPassphrase(file)
	}
	if p := m.Getenv(EnvPassphrase); p != "" {
		return p, nil
	}
	return "", usagef("no passphrase: give --passphrase-file FILE or set %s (a passphrase is never taken from the command line)", EnvPassphrase)
}
