package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
)

// modelSummary is the part of a device model (protocol.md §4) the tables show.
type modelSummary struct {
	URN         string `json:"urn"`
	Name        string `json:"name"`
	Description string `json:"description"`
	System      bool   `json:"system"`
	Draft       bool   `json:"draft"`
	Attributes  []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Alias       string          `json:"alias"`
		Type        string          `json:"type"`
		Range       string          `json:"range"`
		Writable    bool            `json:"writable"`
		Default     json.RawMessage `json:"defaultValue"`
	} `json:"attributes"`
	Actions []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		ArgType     string `json:"argType"`
		Range       string `json:"range"`
		Arguments   []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Range string `json:"range"`
		} `json:"arguments"`
	} `json:"actions"`
	Formats []struct {
		URN   string `json:"urn"`
		Name  string `json:"name"`
		Type  string `json:"type"`
		Value struct {
			Fields []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				Optional bool   `json:"optional"`
			} `json:"fields"`
		} `json:"value"`
	} `json:"formats"`
}

func newTable(m *Main) *tabwriter.Writer {
	return tabwriter.NewWriter(m.stdout, 0, 8, 2, ' ', 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func modelAddCommand() *command {
	return &command{
		name: "model add", args: "FILE", conn: true,
		summary: "Add a device model (JSON, protocol.md §4); FILE - reads standard input",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				data, err := m.readInput(c.pos[0])
				if err != nil {
					return fmt.Errorf("read device model: %w", err)
				}
				var sum modelSummary
				if err := json.Unmarshal(data, &sum); err != nil {
					return fmt.Errorf("device model %s: not a JSON device model: %v", c.pos[0], err)
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				out, err := cl.AddModel(ctx, data)
				if err != nil {
					return explain(cl, err)
				}
				if c.json {
					return m.printJSON(out)
				}
				json.Unmarshal(out, &sum)
				fmt.Fprintf(m.stdout, "Added device model %s (%s): %d attributes, %d actions, %d formats\n",
					sum.URN, orDash(sum.Name), len(sum.Attributes), len(sum.Actions), len(sum.Formats))
				return nil
			}
		},
	}
}

func modelListCommand() *command {
	return &command{
		name: "model list", conn: true,
		summary: "List the device models",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (api.List[json.RawMessage], error) {
					return cl.Models(ctx)
				}, func(list api.List[json.RawMessage]) error {
					tw := newTable(m)
					fmt.Fprintln(tw, "URN\tNAME\tATTRIBUTES\tACTIONS\tFORMATS\tSYSTEM")
					for _, raw := range list.Items {
						var s modelSummary
						json.Unmarshal(raw, &s)
						fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", s.URN, orDash(s.Name), len(s.Attributes), len(s.Actions), len(s.Formats), yesNo(s.System))
					}
					return tw.Flush()
				})
			}
		},
	}
}

func modelShowCommand() *command {
	return &command{
		name: "model show", args: "URN", conn: true,
		summary: "Show a device model",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (json.RawMessage, error) {
					return cl.Model(ctx, c.pos[0])
				}, func(raw json.RawMessage) error {
					var s modelSummary
					if err := json.Unmarshal(raw, &s); err != nil {
						return fmt.Errorf("decode device model: %w", err)
					}
					return printModel(m, &s)
				})
			}
		},
	}
}

func printModel(m *Main, s *modelSummary) error {
	tw := newTable(m)
	fmt.Fprintf(tw, "URN:\t%s\n", s.URN)
	fmt.Fprintf(tw, "Name:\t%s\n", orDash(s.Name))
	fmt.Fprintf(tw, "Description:\t%s\n", orDash(s.Description))
	if s.System || s.Draft {
		fmt.Fprintf(tw, "System:\t%s\nDraft:\t%s\n", yesNo(s.System), yesNo(s.Draft))
	}
	tw.Flush()
	if len(s.Attributes) > 0 {
		fmt.Fprintln(m.stdout)
		tw = newTable(m)
		fmt.Fprintln(tw, "ATTRIBUTE\tTYPE\tRANGE\tWRITABLE\tDEFAULT\tDESCRIPTION")
		for _, a := range s.Attributes {
			name := a.Name
			if a.Alias != "" {
				name += " (" + a.Alias + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, a.Type, orDash(a.Range), yesNo(a.Writable), orDash(string(a.Default)), a.Description)
		}
		tw.Flush()
	}
	if len(s.Actions) > 0 {
		fmt.Fprintln(m.stdout)
		tw = newTable(m)
		fmt.Fprintln(tw, "ACTION\tARGUMENTS\tDESCRIPTION")
		for _, a := range s.Actions {
			var args []string
			if a.ArgType != "" {
				args = append(args, "value "+a.ArgType+rangeSuffix(a.Range))
			}
			for _, g := range a.Arguments {
				args = append(args, g.Name+" "+g.Type+rangeSuffix(g.Range))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, orDash(strings.Join(args, ", ")), a.Description)
		}
		tw.Flush()
	}
	if len(s.Formats) > 0 {
		fmt.Fprintln(m.stdout)
		tw = newTable(m)
		fmt.Fprintln(tw, "FORMAT\tTYPE\tNAME\tFIELDS")
		for _, f := range s.Formats {
			var fields []string
			for _, x := range f.Value.Fields {
				t := x.Name + " " + x.Type
				if x.Optional {
					t += "?"
				}
				fields = append(fields, t)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.URN, f.Type, orDash(f.Name), orDash(strings.Join(fields, ", ")))
		}
		tw.Flush()
	}
	return nil
}

func rangeSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " [" + r + "]"
}

// policySummary is the part of a device policy (protocol.md §5) the tables show.
type policySummary struct {
	ID          string `json:"id"`
	Model       string `json:"deviceModelUrn"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	Modified    int64  `json:"lastModified"`
	Pipelines   []struct {
		Attribute string `json:"attributeName"`
		Pipeline  []struct {
			ID string `json:"id"`
		} `json:"pipeline"`
	} `json:"pipelines"`
}

func (p *policySummary) functions() string {
	var parts []string
	for _, pl := range p.Pipelines {
		var ids []string
		for _, f := range pl.Pipeline {
			ids = append(ids, f.ID)
		}
		parts = append(parts, pl.Attribute+": "+strings.Join(ids, " > "))
	}
	return strings.Join(parts, "; ")
}

func policyAddCommand() *command {
	var model string
	return &command{
		name: "policy add", args: "FILE", flags: "--model URN", conn: true,
		summary: "Add a device policy (JSON, protocol.md §5) for a device model",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			fs.StringVar(&model, "model", "", "`URN` of the device model the policy is for (required unless FILE has deviceModelUrn)")
			return func(ctx context.Context, m *Main, c *call) error {
				data, err := m.readInput(c.pos[0])
				if err != nil {
					return fmt.Errorf("read device policy: %w", err)
				}
				var p policySummary
				if err := json.Unmarshal(data, &p); err != nil {
					return fmt.Errorf("device policy %s: not a JSON device policy: %v", c.pos[0], err)
				}
				if model == "" && p.Model == "" {
					return usagef(c.cmd.name, "--model URN is required (%s has no deviceModelUrn)", c.pos[0])
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				out, err := cl.AddPolicy(ctx, data, model)
				if err != nil {
					return explain(cl, err)
				}
				if c.json {
					return m.printJSON(out)
				}
				json.Unmarshal(out, &p)
				fmt.Fprintf(m.stdout, "Added device policy %s for device model %s\n", p.ID, orDash(firstOf(p.Model, model)))
				fmt.Fprintf(m.stdout, "Assign it with: iotcloud policy assign %s --model %s [--device ID]...\n", p.ID, orDash(firstOf(p.Model, model)))
				return nil
			}
		},
	}
}

func policyAssignCommand() *command {
	var model string
	var devices stringList
	return &command{
		name: "policy assign", args: "ID", flags: "--model URN [--device ID]...", conn: true,
		summary: "Assign a device policy to every device of a model, or to some devices",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			fs.StringVar(&model, "model", "", "`URN` of the device model (required)")
			fs.Var(&devices, "device", "endpoint `ID` of a device to assign it to (repeatable; default: every device of the model)")
			return func(ctx context.Context, m *Main, c *call) error {
				if model == "" {
					return usagef(c.cmd.name, "--model URN is required")
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				a := api.PolicyAssignment{DeviceModel: model, Devices: devices}
				if err := cl.AssignPolicy(ctx, c.pos[0], a); err != nil {
					return explain(cl, err)
				}
				if c.json {
					return m.printJSON(map[string]any{"policy": c.pos[0], "assignment": a})
				}
				if len(devices) == 0 {
					fmt.Fprintf(m.stdout, "Assigned device policy %s to every device of model %s\n", c.pos[0], model)
				} else {
					fmt.Fprintf(m.stdout, "Assigned device policy %s to %s (model %s)\n", c.pos[0], strings.Join(devices, ", "), model)
				}
				return nil
			}
		},
	}
}

func policyRmCommand() *command {
	return &command{
		name: "policy rm", args: "ID", conn: true,
		summary: "Delete a device policy (its devices are told)",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				if err := cl.DeletePolicy(ctx, c.pos[0]); err != nil {
					return explain(cl, err)
				}
				if c.json {
					return m.printJSON(map[string]any{"deleted": c.pos[0]})
				}
				fmt.Fprintf(m.stdout, "Deleted device policy %s\n", c.pos[0])
				return nil
			}
		},
	}
}

func policyListCommand() *command {
	var model string
	return &command{
		name: "policy list", flags: "[--model URN]", conn: true,
		summary: "List device policies",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			fs.StringVar(&model, "model", "", "only the policies of this device model `URN`")
			return func(ctx context.Context, m *Main, c *call) error {
				return show(ctx, m, c, func(ctx context.Context, cl *client.Client) (api.List[json.RawMessage], error) {
					return cl.Policies(ctx, model)
				}, func(list api.List[json.RawMessage]) error {
					tw := newTable(m)
					fmt.Fprintln(tw, "ID\tMODEL\tENABLED\tMODIFIED\tPIPELINES\tDESCRIPTION")
					for _, raw := range list.Items {
						var p policySummary
						json.Unmarshal(raw, &p)
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, orDash(p.Model), yesNo(p.Enabled), msTime(p.Modified), orDash(p.functions()), p.Description)
					}
					return tw.Flush()
				})
			}
		},
	}
}

func policyShowCommand() *command {
	return &command{
		name: "policy show", args: "ID", conn: true,
		summary: "Show a device policy (its JSON)",
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			return func(ctx context.Context, m *Main, c *call) error {
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				raw, err := cl.Policy(ctx, c.pos[0])
				if err != nil {
					return explain(cl, err)
				}
				// A policy is a nested structure: its indented JSON is the
				// clearest view for people too.
				var buf bytes.Buffer
				if err := json.Indent(&buf, raw, "", "  "); err != nil {
					return fmt.Errorf("decode device policy: %w", err)
				}
				buf.WriteByte('\n')
				_, err = m.stdout.Write(buf.Bytes())
				return err
			}
		},
	}
}
