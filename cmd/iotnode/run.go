package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

func runCommand() *command {
	var cf configFlags
	return &command{
		name:    "run",
		summary: "Run the node: read sensors, report to the cloud, obey its commands",
		help: `
Reads the config (docs/config.md), activates the device on its first run,
registers a gateway's indirectly connected devices, and then samples every
device at its interval until SIGINT or SIGTERM. At shutdown it sends what is
queued for up to 5 seconds; the rest stays in the outbox for the next start.

With --check it only reads and checks the config, the files it names and
the bindings against the device models at hand (the config's models files
and those in the data directory), and exits.

Exit status: 0 after a clean shutdown, 1 on a failure, 2 when the config has
problems (all of them are listed).`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
			cf.define(fs, true)
			check := fs.Bool("check", false, "check the config (and the bindings against the models at hand) and exit")
			return func(ctx context.Context, m *Main, pos []string) error {
				c, err := cf.load(m, m.drivers())
				if err != nil {
					return err
				}
				if *check {
					fmt.Fprintf(m.stdout, "config %s is valid: %d device(s), mode %s\n", c.file, len(c.Devices), c.Mode)
					return nil
				}
				return m.runNode(ctx, c, m.nodeDeps(c))
			}
		},
	}
}

// runNode runs a node until ctx ends, then shuts it down.
func (m *Main) runNode(ctx context.Context, c *Config, deps nodeDeps) error {
	log := named(deps.logger, "iotnode.run")
	n, err := openNode(c, deps)
	if err != nil {
		return err
	}
	if err := n.prepare(ctx); err != nil {
		closeErr := n.close(context.Background())
		if ctx.Err() != nil && closeErr == nil {
			log.Info("stopped while starting")
			return nil
		}
		return errors.Join(err, closeErr)
	}
	var ms *metricsServer
	if c.Metrics.Listen != "" {
		ms, err = startMetrics(c.Metrics.Listen, n, named(deps.logger, "iotnode.metrics"))
		if err != nil {
			return errors.Join(err, n.close(context.Background()))
		}
	}
	n.start()
	log.Info("running", slog.Int("devices", len(n.devices)), slog.String("endpoint_id", n.dcd.EndpointID()), slog.String("version", versionString()))
	if m.onRunning != nil {
		var addr net.Addr
		if ms != nil {
			addr = ms.addr
		}
		m.onRunning(n, addr)
	}
	<-ctx.Done()
	log.Info("shutting down", slog.Duration("grace", shutdownGrace))
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	if ms != nil {
		errs = append(errs, ms.shutdown(sctx))
	}
	errs = append(errs, n.close(sctx))
	st := n.outbox.Stats()
	log.Info("stopped", slog.Duration("took", time.Since(start).Round(time.Millisecond)), slog.Int64("outbox_messages", st.Queued))
	return errors.Join(errs...)
}

// metricsServer serves /metrics in the Prometheus text format.
type metricsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// startMetrics listens on addr and serves n's metrics until shutdown.
func startMetrics(addr string, n *node, log *slog.Logger) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		writeMetrics(w, n.status())
	})
	ms := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		addr: ln.Addr(),
		done: make(chan error, 1),
	}
	go func() { // owned by ms: shutdown stops it and waits
		err := ms.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		ms.done <- err
	}()
	log.Info("serving metrics", slog.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return ms, nil
}

func (ms *metricsServer) shutdown(ctx context.Context) error {
	err := ms.srv.Shutdown(ctx)
	if err != nil {
		ms.srv.Close()
	}
	if serveErr := <-ms.done; serveErr != nil {
		return fmt.Errorf("metrics: %w", serveErr)
	}
	return nil
}

// nodeDeps are the dependencies of a node that run, activate and models pull
// open from config c: the clock, a logger per c.Logging and the KDF cost.
func (m *Main) nodeDeps(c *Config) nodeDeps {
	return nodeDeps{clock: m.Clock, logger: newLogger(m.stderr, c.Logging), kdfIterations: m.kdfIterations}
}
