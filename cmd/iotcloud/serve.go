package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud/launch"
)

func serveCommand() *command {
	return &command{
		name:    "serve",
		flags:   "--data DIR [--listen HOST:PORT] [--hostname NAME]... [--mqtt-listen HOST:PORT | --mqtt-broker URL] [--store URL] [--insecure-http]",
		summary: "Run the cloud: device and enterprise APIs over HTTPS, devices over MQTT too if asked",
		help: `
On first start serve creates DIR with its own CA (DIR/ca.pem), a server
certificate for localhost, 127.0.0.1, ::1 and every --hostname, and the
enterprise API's bearer token (DIR/admin.token, mode 0600). It writes the URL
it serves to DIR/url, so client commands need only --data DIR. Data survives
restarts. SIGINT or SIGTERM stops it gracefully.

With --mqtt-listen the device API is also served over MQTT (docs/mqtt.md) by
an embedded broker, over TLS with the same certificate; with --mqtt-broker the
cloud instead connects to an existing broker (such as Mosquitto) and serves
devices through it: that broker then authenticates devices and controls
their access, so use it on loopback or with per-client ACLs.`,
		setup: func(fs *flag.FlagSet) func(ctx context.Context, m *Main, c *call) error {
			s := &serveCmd{}
			s.flags(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				if err := s.validate(); err != nil {
					return err
				}
				if err := s.Open(ctx, m); err != nil {
					return err
				}
				err := s.Run(ctx)
				if cerr := s.Close(); err == nil {
					err = cerr
				}
				return err
			}
		},
	}
}

// serveCmd is `iotcloud serve`: flags, then Open, Run until ctx ends, Close.
type serveCmd struct {
	data, listen, publicURL     string
	mqttListen, mqttBroker      string
	mqttPublicURL               string
	hostnames                   stringList
	insecure                    bool
	logLevel, logFormat         string
	storeURL, storeSchema       string
	retention, requestTTL, wait time.Duration
	maxMessages                 int

	m    *Main
	log  *slog.Logger
	inst *launch.Instance
}

func (s *serveCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.data, "data", "", "`DIR` for the cloud's data (created when missing; required)")
	fs.StringVar(&s.listen, "listen", launch.DefaultListen, "`HOST:PORT` to listen on; port 0 picks a free port")
	fs.Var(&s.hostnames, "hostname", "extra DNS `NAME` or IP address for the server certificate (repeatable)")
	fs.StringVar(&s.publicURL, "public-url", "", "`URL` devices use to reach the cloud (default: from --listen, or the first --hostname)")
	fs.StringVar(&s.mqttListen, "mqtt-listen", "", "also serve devices over MQTT with an embedded broker on `HOST:PORT` (TLS; 8883 is MQTT's port), port 0 picks a free port")
	fs.StringVar(&s.mqttBroker, "mqtt-broker", "", "also serve devices over MQTT through the existing broker at `URL` (mqtt://HOST:PORT or mqtts://...), instead of --mqtt-listen")
	fs.StringVar(&s.mqttPublicURL, "mqtt-public-url", "", "`URL` devices use to reach the MQTT broker (default: from --mqtt-listen, or --mqtt-broker)")
	fs.StringVar(&s.storeURL, "store", "", "keep the cloud's records in PostgreSQL at `URL` (postgres://USER@HOST:PORT/DB?sslmode=disable) instead of DIR/cloud.db; stored objects stay in DIR")
	fs.StringVar(&s.storeSchema, "store-schema", "", "the PostgreSQL `SCHEMA` of --store (default iotcloud)")
	fs.BoolVar(&s.insecure, "insecure-http", false, "serve plain HTTP (and plain MQTT) without TLS, for local experiments only")
	fs.StringVar(&s.logLevel, "log-level", "info", "`LEVEL`: debug, info, warn or error")
	fs.StringVar(&s.logFormat, "log-format", "text", "`FORMAT`: text or json")
	fs.DurationVar(&s.retention, "retention", 0, "how long received messages are kept, a `DURATION` such as 168h (default: the cloud's)")
	fs.IntVar(&s.maxMessages, "max-messages", 0, "the most received messages kept, `N` (default: the cloud's)")
	fs.DurationVar(&s.requestTTL, "request-ttl", 0, "how long a request to a device waits for its answer, a `DURATION` (default: the cloud's)")
	fs.DurationVar(&s.wait, "shutdown-timeout", 15*time.Second, "on SIGTERM, how long requests in flight may take to finish, a `DURATION`")
}

func (s *serveCmd) validate() error {
	if s.data == "" {
		return usagef("serve", "--data DIR is required (the directory for the cloud's data, such as ./iotcloud-data)")
	}
	if _, err := parseLevel(s.logLevel); err != nil {
		return usagef("serve", "%s", err)
	}
	if s.logFormat != "text" && s.logFormat != "json" {
		return usagef("serve", "--log-format %q: expected text or json", s.logFormat)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"retention", s.retention}, {"request-ttl", s.requestTTL}, {"shutdown-timeout", s.wait}} {
		if d.v < 0 {
			return usagef("serve", "--%s %s: expected a positive duration", d.name, d.v)
		}
	}
	if s.mqttListen != "" && s.mqttBroker != "" {
		return usagef("serve", "--mqtt-listen and --mqtt-broker: expected one of them (the cloud runs its own broker or uses another)")
	}
	if s.mqttPublicURL != "" && s.mqttListen == "" && s.mqttBroker == "" {
		return usagef("serve", "--mqtt-public-url needs --mqtt-listen or --mqtt-broker")
	}
	if s.storeSchema != "" && s.storeURL == "" {
		return usagef("serve", "--store-schema needs --store")
	}
	if s.maxMessages < 0 {
		return usagef("serve", "--max-messages %d: expected a positive number", s.maxMessages)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: expected debug, info, warn or error", s)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	lvl, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Open starts the cloud and prints where it serves.
func (s *serveCmd) Open(ctx context.Context, m *Main) error {
	s.m = m
	s.log = newLogger(m.stderr, s.logLevel, s.logFormat)
	o := launch.Options{
		DataDir:          s.data,
		Listen:           s.listen,
		Hostnames:        s.hostnames,
		PublicURL:        s.publicURL,
		MQTTListen:       s.mqttListen,
		MQTTBroker:       s.mqttBroker,
		MQTTPublicURL:    s.mqttPublicURL,
		StoreURL:         s.storeURL,
		StoreSchema:      s.storeSchema,
		InsecureHTTP:     s.insecure,
		Logger:           s.log,
		Now:              m.Now,
		MessageRetention: s.retention,
		MaxMessages:      s.maxMessages,
		RequestTTL:       s.requestTTL,
	}
	if m.serveOptions != nil {
		m.serveOptions(&o)
	}
	inst, err := launch.Start(ctx, o)
	if err != nil {
		return err
	}
	s.inst = inst
	w := m.stdout
	fmt.Fprintf(w, "iotcloud serving at %s\n", inst.URL())
	if u := inst.MQTTURL(); u != "" {
		fmt.Fprintf(w, "  MQTT:           %s\n", u)
	}
	fmt.Fprintf(w, "  admin token:    %s\n", inst.TokenPath())
	if p := inst.CACertPath(); p != "" {
		fmt.Fprintf(w, "  CA certificate: %s\n", p)
	} else {
		fmt.Fprintf(w, "  WARNING: plain HTTP (--insecure-http): tokens and secrets cross the network in clear\n")
	}
	fmt.Fprintf(w, "  try:            iotcloud device list --data %s\n", s.data)
	if m.onServe != nil {
		m.onServe(inst)
	}
	return nil
}

// Run blocks until ctx ends (then it returns nil) or the cloud stops
// serving on its own (then it returns why).
func (s *serveCmd) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", slog.String("logger", "iotcloud.serve"), slog.Duration("grace", s.wait))
		return nil
	case <-s.inst.Done():
		if err := s.inst.Err(); err != nil {
			return err
		}
		return errors.New("the server stopped unexpectedly")
	}
}

// Close shuts the cloud down, giving requests in flight --shutdown-timeout.
func (s *serveCmd) Close() error {
	if s.inst == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	return s.inst.Shutdown(ctx)
}
