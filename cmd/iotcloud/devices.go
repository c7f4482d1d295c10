package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
)

// provisionFlags are shared by device register and device provision.
type provisionFlags struct {
	out, passFile, format string
	force, mqtt           bool
}

func (p *provisionFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&p.out, "out", "", "`FILE` to write the provisioning file to, mode 0600 (required)")
	fs.StringVar(&p.passFile, "passphrase-file", "", "`FILE` whose first line is the passphrase that encrypts the provisioning file (or env "+EnvPassphrase+")")
	fs.StringVar(&p.format, "format", "v2", "`FORMAT`: v2 (authenticated encryption, recommended) or oracle (for Oracle's client libraries)")
	fs.BoolVar(&p.force, "force", false, "overwrite --out when it exists")
	fs.BoolVar(&p.mqtt, "mqtt", false, "the device connects over MQTT: the file names the cloud's MQTT broker (serve --mqtt-listen or --mqtt-broker), format v2 only")
}

// describe is "format F" and, with --mqtt, the transport, for messages.
func (p *provisionFlags) describe() string {
	if p.mqtt {
		return "format " + p.format + " for MQTT"
	}
	return "format " + p.format
}

// transport is the provisioning request's transport.
func (p *provisionFlags) transport() string {
	if p.mqtt {
		return "mqtt"
	}
	return ""
}

// check validates the flags and returns the passphrase. It runs before
// anything is sent, so a usage error registers nothing.
func (p *provisionFlags) check(m *Main, cmd string) (string, error) {
	if p.out == "" {
		return "", usagef(cmd, "--out FILE is required (where to write the provisioning file)")
	}
	if p.format != "v2" && p.format != "oracle" {
		return "", usagef(cmd, "--format %q: expected v2 or oracle", p.format)
	}
	if p.mqtt && p.format == "oracle" {
		return "", usagef(cmd, "--mqtt with --format oracle: an Oracle file carries an https server URI only, expected --format v2")
	}
	var pass string
	switch {
	case p.passFile != "":
		b, err := os.ReadFile(p.passFile)
		if err != nil {
			return "", fmt.Errorf("read passphrase: %w", err)
		}
		pass, _, _ = strings.Cut(string(b), "\n")
		pass = strings.TrimSuffix(pass, "\r")
		if pass == "" {
			return "", fmt.Errorf("passphrase file %s: the first line is empty (expected the passphrase)", p.passFile)
		}
	case m.Getenv(EnvPassphrase) != "":
		pass = m.Getenv(EnvPassphrase)
	default:
		return "", usagef(cmd, "no passphrase: use --passphrase-file FILE or set %s (a passphrase is never taken from the command line)", EnvPassphrase)
	}
	if n := len(pass); n < cloud.MinPassphraseLen {
		return "", fmt.Errorf("the passphrase has %d characters, expected at least %d", n, cloud.MinPassphraseLen)
	}
	if fi, err := os.Stat(p.out); err == nil {
		if fi.IsDir() {
			return "", usagef(cmd, "--out %s is a directory (expected a file name)", p.out)
		}
		if !p.force {
			return "", fmt.Errorf("%s already exists: it may be a device's provisioning file; choose another --out or add --force", p.out)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("check --out: %w", err)
	}
	if fi, err := os.Stat(filepath.Dir(p.out)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--out %s: directory %s does not exist", p.out, filepath.Dir(p.out))
	}
	return pass, nil
}

// write fetches the provisioning file of device id and writes it (0600).
func (p *provisionFlags) write(ctx context.Context, cl *client.Client, id, pass string) error {
	file, err := cl.ProvisioningFile(ctx, id, api.ProvisioningFileRequest{Passphrase: pass, Format: p.format, Transport: p.transport()})
	if err != nil {
		return explain(cl, err)
	}
	if err := launch.WriteFileAtomic(p.out, file, 0o600); err != nil {
		return fmt.Errorf("write provisioning file: %w", err)
	}
	return nil
}

func deviceRegisterCommand() *command {
	var (
		pf       provisionFlags
		models   stringList
		gateway  bool
		hardware string
		metadata stringList
	)
	return &command{
		name: "device register", flags: "--out FILE --passphrase-file FILE [--model URN]... [--gateway] [--format v2|oracle] [--mqtt]", conn: true,
		summary: "Register a device and write its provisioning file",
		help: `
The cloud generates the device's shared secret; it goes into the provisioning
file only and is never printed. Give the file and its passphrase to the device
(iotnode, or a device built on Oracle's client libraries with --format oracle).`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			fs.Var(&models, "model", "`URN` of a device model the device implements, checked to exist (repeatable)")
			fs.BoolVar(&gateway, "gateway", false, "register a gateway (it may activate indirectly connected devices)")
			fs.StringVar(&hardware, "hardware-id", "", "the device's hardware `ID`, such as a serial number (default: chosen by the cloud)")
			fs.Var(&metadata, "metadata", "`KEY=VALUE` metadata (repeatable)")
			pf.define(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				req := api.RegisterDevice{HardwareID: hardware, Type: api.DeviceTypeDirect}
				if gateway {
					req.Type = api.DeviceTypeGateway
				}
				for _, kv := range metadata {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return usagef(c.cmd.name, "--metadata %q: expected KEY=VALUE", kv)
					}
					if req.Metadata == nil {
						req.Metadata = map[string]string{}
					}
					req.Metadata[k] = v
				}
				pass, err := pf.check(m, c.cmd.name)
				if err != nil {
					return err
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				for _, urn := range models {
					if _, err := cl.Model(ctx, urn); client.IsNotFound(err) {
						return fmt.Errorf("device model %s is not on the cloud: add it first with 'iotcloud model add FILE'", urn)
					} else if err != nil {
						return explain(cl, err)
					}
				}
				dev, err := cl.RegisterDevice(ctx, req)
				if err != nil {
					return explain(cl, err)
				}
				dev.SharedSecret = "" // a secret: it is in the provisioning file only
				if err := pf.write(ctx, cl, dev.ID, pass); err != nil {
					return fmt.Errorf("device %s is registered, but its provisioning file was not written: %w\nRetry with: iotcloud device provision %s --out %s", dev.ID, err, dev.ID, pf.out)
				}
				if c.json {
					return m.printJSON(map[string]any{"device": dev, "provisioningFile": pf.out, "format": pf.format, "mqtt": pf.mqtt})
				}
				fmt.Fprintf(m.stdout, "Registered %s %s (hardware id %s)\n", strings.ToLower(typeName(dev.Type)), dev.ID, dev.HardwareID)
				fmt.Fprintf(m.stdout, "Wrote provisioning file %s (%s, mode 0600): give it and its passphrase to the device\n", pf.out, pf.describe())
				return nil
			}
		},
	}
}

func typeName(t string) string {
	switch t {
	case api.DeviceTypeDirect:
		return "Device"
	case api.DeviceTypeGateway:
		return "Gateway"
	case api.DeviceTypeIndirect:
		return "Indirectly connected device"
	}
	return "Device"
}

func deviceProvisionCommand() *command {
	var pf provisionFlags
	return &command{
		name: "device provision", args: "ID", flags: "--out FILE --passphrase-file FILE [--format v2|oracle] [--mqtt]", conn: true,
		summary: "Write the provisioning file of a registered device again",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			pf.define(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				pass, err := pf.check(m, c.cmd.name)
				if err != nil {
					return err
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				if err := pf.write(ctx, cl, c.pos[0], pass); err != nil {
					return err
				}
				if c.json {
					return m.printJSON(map[string]any{"device": c.pos[0], "provisioningFile": pf.out, "format": pf.format, "mqtt": pf.mqtt})
				}
				fmt.Fprintf(m.stdout, "Wrote provisioning file %s for device %s (%s, mode 0600)\n", pf.out, c.pos[0], pf.describe())
				return nil
			}
		},
	}
}

func deviceListCommand() *command {
	return &command{
		name: "device list", conn: true,
		summary: "List the registered devices",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (api.List[api.Device], error) {
					list, err := cl.Devices(ctx)
					for i := range list.Items {
						list.Items[i].SharedSecret = ""
					}
					return list, err
				}, func(list api.List[api.Device]) error {
					tw := newTable(m)
					fmt.Fprintln(tw, "ID\tHARDWARE ID\tTYPE\tSTATE\tENDPOINT\tMODELS\tLAST SEEN")
					for _, d := range list.Items {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(d.HardwareID), d.Type, d.State, orDash(d.EndpointID), userModels(d.Models), msTime(d.LastSeen))
					}
					return tw.Flush()
				})
			}
		},
	}
}

// userModels lists the models of a device without Oracle's capability URNs.
func userModels(urns []string) string {
	var out []string
	for _, u := range urns {
		if !strings.HasPrefix(u, "urn:oracle:iot:dcd:capability:") {
			out = append(out, u)
		}
	}
	return orDash(strings.Join(out, ","))
}

func deviceShowCommand() *command {
	return &command{
		name: "device show", args: "ID", conn: true,
		summary: "Show a device (by activation id or endpoint id)",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (api.Device, error) {
					d, err := cl.Device(ctx, c.pos[0])
					d.SharedSecret = ""
					return d, err
				}, func(d api.Device) error {
					tw := newTable(m)
					fmt.Fprintf(tw, "ID:\t%s\n", d.ID)
					fmt.Fprintf(tw, "Hardware ID:\t%s\n", orDash(d.HardwareID))
					fmt.Fprintf(tw, "Type:\t%s\n", d.Type)
					fmt.Fprintf(tw, "State:\t%s\n", d.State)
					fmt.Fprintf(tw, "Endpoint ID:\t%s\n", orDash(d.EndpointID))
					if d.Gateway != "" {
						fmt.Fprintf(tw, "Gateway:\t%s\n", d.Gateway)
					}
					fmt.Fprintf(tw, "Created:\t%s\n", msTime(d.Created))
					fmt.Fprintf(tw, "Activated:\t%s\n", msTime(d.ActivatedAt))
					fmt.Fprintf(tw, "Last seen:\t%s\n", msTime(d.LastSeen))
					if len(d.Models) == 0 {
						fmt.Fprintf(tw, "Models:\t-\n")
					}
					for i, u := range d.Models {
						label := ""
						if i == 0 {
							label = "Models:"
						}
						fmt.Fprintf(tw, "%s\t%s\n", label, u)
					}
					for i, k := range sortedKeys(d.Metadata) {
						label := ""
						if i == 0 {
							label = "Metadata:"
						}
						fmt.Fprintf(tw, "%s\t%s=%s\n", label, k, d.Metadata[k])
					}
					return tw.Flush()
				})
			}
		},
	}
}

func deviceAttributesCommand() *command {
	return &command{
		name: "device attributes", args: "ID URN", conn: true,
		summary: "Show the last known attribute values of a device for a model",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (map[string]any, error) {
					return cl.Attributes(ctx, c.pos[0], c.pos[1])
				}, func(attrs map[string]any) error {
					tw := newTable(m)
					fmt.Fprintln(tw, "ATTRIBUTE\tVALUE")
					for _, k := range sortedKeys(attrs) {
						b, _ := json.Marshal(attrs[k])
						fmt.Fprintf(tw, "%s\t%s\n", k, b)
					}
					return tw.Flush()
				})
			}
		},
	}
}

// parseValue reads a command-line value: JSON when it parses (numbers,
// true, false, null, quoted strings, objects, arrays), else the text itself.
func parseValue(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		return v
	}
	return s
}

// waitFlags are shared by the commands that can wait for a request.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) define(fs *flag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", false, "wait until the device answered (or the request failed or expired)")
	fs.DurationVar(&w.timeout, "timeout", 2*time.Minute, "with --wait, how long to wait (a `DURATION` such as 30s)")
}

// finish prints a queued request, or waits for it and prints its outcome.
func (w *waitFlags) finish(ctx context.Context, m *Main, c *call, cl *client.Client, id, what string) error {
	if !w.wait {
		if c.json {
			return m.printJSON(api.Accepted{RequestID: id})
		}
		fmt.Fprintf(m.stdout, "Queued request %s: %s\n", id, what)
		fmt.Fprintf(m.stdout, "Follow it with: iotcloud request show %s --wait\n", id)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	r, err := cl.WaitRequest(ctx, id)
	if err != nil {
		return explain(cl, err)
	}
	return printRequest(m, c, r)
}

func deviceSetCommand() *command {
	var w waitFlags
	return &command{
		name: "device set", args: "ID URN ATTR VALUE", flags: "[--wait]", conn: true,
		summary: "Ask a device to set an attribute",
		help: `
ID is the device's endpoint id. VALUE is read as JSON when it parses (42, 4.5,
true, "text") and as text otherwise; a negative number may be written as is.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			w.define(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				id, urn, attr := c.pos[0], c.pos[1], c.pos[2]
				value := parseValue(c.pos[3])
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				rid, err := cl.SetAttribute(ctx, id, urn, attr, value)
				if err != nil {
					return explain(cl, err)
				}
				b, _ := json.Marshal(value)
				return w.finish(ctx, m, c, cl, rid, fmt.Sprintf("set %s = %s on device %s", attr, b, id))
			}
		},
	}
}

func deviceCallCommand() *command {
	var w waitFlags
	return &command{
		name: "device call", args: "ID URN ACTION [ARG]", flags: "[--wait]", conn: true,
		summary: "Ask a device to run an action",
		help: `
ID is the device's endpoint id. ARG is read as JSON when it parses and as text
otherwise. A JSON object gives named arguments ({"level":3,"mode":"eco"});
any other value is the single argument ({"value": ARG} on the wire); no ARG
calls an action without arguments.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			w.define(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				id, urn, action := c.pos[0], c.pos[1], c.pos[2]
				var args any
				what := fmt.Sprintf("call %s on device %s", action, id)
				if len(c.pos) == 4 {
					v := parseValue(c.pos[3])
					if obj, ok := v.(map[string]any); ok {
						args = obj
					} else {
						args = map[string]any{"value": v}
					}
					b, _ := json.Marshal(v)
					what = fmt.Sprintf("call %s(%s) on device %s", action, b, id)
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				rid, err := cl.CallAction(ctx, id, urn, action, args)
				if err != nil {
					return explain(cl, err)
				}
				return w.finish(ctx, m, c, cl, rid, what)
			}
		},
	}
}

func requestShowCommand() *command {
	var w waitFlags
	return &command{
		name: "request show", args: "ID", flags: "[--wait]", conn: true,
		summary: "Show a request sent to a device and the device's answer",
		help: `
With --wait the exit status is 1 when the request ends FAILED or EXPIRED.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			w.define(fs)
			return func(ctx context.Context, m *Main, c *call) error {
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				if w.wait {
					return w.finish(ctx, m, c, cl, c.pos[0], "")
				}
				r, err := cl.Request(ctx, c.pos[0])
				if err != nil {
					return explain(cl, err)
				}
				if c.json {
					return m.printJSON(r)
				}
				return printRequest(m, nil, r)
			}
		},
	}
}

// printRequest prints a request. When c is not nil (the caller waited), a
// FAILED or EXPIRED request makes the command exit 1.
func printRequest(m *Main, c *call, r api.Request) error {
	if c != nil && c.json {
		if err := m.printJSON(r); err != nil {
			return err
		}
	} else {
		tw := newTable(m)
		fmt.Fprintf(tw, "Request:\t%s\n", r.ID)
		fmt.Fprintf(tw, "Device:\t%s\n", r.Destination)
		fmt.Fprintf(tw, "Call:\t%s %s\n", r.Method, r.URL)
		fmt.Fprintf(tw, "Status:\t%s\n", r.Status)
		fmt.Fprintf(tw, "Created:\t%s\n", msTime(r.Created))
		fmt.Fprintf(tw, "Updated:\t%s\n", msTime(r.Updated))
		if r.Response != nil {
			fmt.Fprintf(tw, "Response:\t%d\n", r.Response.StatusCode)
			if r.Response.Body != "" {
				fmt.Fprintf(tw, "Response body:\t%s\n", strings.TrimSpace(r.Response.Body))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if c != nil && (r.Status == api.RequestFailed || r.Status == api.RequestExpired) {
		msg := fmt.Sprintf("request %s ended %s", r.ID, r.Status)
		if r.Response != nil {
			msg += fmt.Sprintf(": the device answered %d", r.Response.StatusCode)
			if b := strings.TrimSpace(r.Response.Body); b != "" {
				msg += " " + b
			}
		}
		return &exitError{code: 1, msg: msg}
	}
	return nil
}
