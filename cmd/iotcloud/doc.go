// Command iotcloud is the self-hostable reference cloud (iotcloud serve) and
// the command-line client of its enterprise API. docs/iotcloud.md is its
// manual.
//
// This package is the composition root of the cloud. Main.Run parses the
// command line and runs one command in-process (tests drive it the same way,
// with their own stdout, stderr, environment and context):
//
//   - serve starts the cloud with cloud/launch until the context ends
//     (SIGINT or SIGTERM in main), then shuts it down gracefully;
//   - every other command calls a running cloud's enterprise API through
//     cloud/client and prints a table for people, or JSON (--json) for scripts.
//
// Exit codes: 0 success, 1 failure (the server's message is printed), 2 usage
// error. It never panics on bad input. Secrets (passphrases, the admin token)
// are read from files or the environment, never from command-line arguments,
// and are never printed.
//
// It may import the cloud packages and the standard library (flag and
// text/tabwriter are enough for this CLI); never device/ or adapters/.
package main
