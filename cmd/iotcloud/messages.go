package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
)

func messagesCommand() *command {
	var (
		device, typ, since string
		after              uint64
		limit              int
		follow             bool
		interval           time.Duration
	)
	return &command{
		name: "messages", flags: "[--device ID] [--type TYPE] [--since WHEN] [--after SEQ] [--limit N] [--follow]", conn: true,
		summary: "Show the messages devices sent",
		help: `
Without --since or --after it shows the newest messages; with them, the oldest
from there. --since takes a duration back from now (10m, 2h), an RFC 3339 time
(2026-01-02T15:04:05Z) or epoch milliseconds. --after takes a message's
sequence number (its "seq" in --json output) and shows the messages stored
after it. With --follow, messages are printed as they arrive until Ctrl-C,
each once; with --json each message is then one JSON line.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, *call) error {
			fs.StringVar(&device, "device", "", "only messages from this endpoint `ID`")
			fs.StringVar(&typ, "type", "", "only messages of this `TYPE`: DATA, ALERT, RESPONSE, RESOURCES_REPORT")
			fs.StringVar(&since, "since", "", "only messages received since `WHEN`")
			fs.Uint64Var(&after, "after", 0, "only messages stored after the one numbered `SEQ`")
			fs.IntVar(&limit, "limit", 0, "at most `N` messages per page (default: the cloud's)")
			fs.BoolVar(&follow, "follow", false, "keep printing new messages until interrupted")
			fs.DurationVar(&interval, "interval", time.Second, "with --follow, how often to ask for new messages (a `DURATION`)")
			return func(ctx context.Context, m *Main, c *call) error {
				q := client.MessageQuery{Source: device, Type: strings.ToUpper(typ), After: after, Limit: limit}
				fs.Visit(func(f *flag.Flag) {
					if f.Name == "after" {
						q.Oldest = true // --after 0 too: from the first message
					}
				})
				if limit < 0 {
					return usagef(c.cmd.name, "--limit %d: expected a positive number", limit)
				}
				if interval <= 0 {
					return usagef(c.cmd.name, "--interval %s: expected a positive duration", interval)
				}
				switch q.Type {
				case "", "DATA", "ALERT", "REQUEST", "RESPONSE", "RESOURCES_REPORT":
				default:
					return usagef(c.cmd.name, "--type %q: expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT", typ)
				}
				var err error
				if q.Since, err = parseSince(since, m.Now()); err != nil {
					return usagef(c.cmd.name, "%s", err)
				}
				cl, err := m.client(c)
				if err != nil {
					return err
				}
				if !follow {
					list, err := cl.Messages(ctx, q)
					if err != nil {
						return explain(cl, err)
					}
					if c.json {
						return m.printJSON(list)
					}
					printMessageHeader(m)
					for _, msg := range list.Items {
						printMessage(m, msg)
					}
					switch {
					case list.HasMore && (q.Since != 0 || q.Oldest):
						fmt.Fprintf(m.stderr, "(more messages: continue with --after %d)\n", list.Next)
					case list.HasMore:
						fmt.Fprintf(m.stderr, "(more messages: narrow with --since or --device, or raise --limit)\n")
					}
					return nil
				}
				return followMessages(ctx, m, c, cl, q, interval)
			}
		},
	}
}

// followMessages polls for new messages until ctx ends (then it returns nil).
// The first call is q as given (the newest messages, or the oldest from
// --since or --after); every later one continues from the cloud's cursor
// (after=next), so each message is printed once, however many share a
// millisecond.
func followMessages(ctx context.Context, m *Main, c *call, cl *client.Client, q client.MessageQuery, interval time.Duration) error {
	if !c.json {
		printMessageHeader(m)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		forward := q.Since != 0 || q.After != 0 || q.Oldest // hasMore means later pages
		list, err := cl.Messages(ctx, q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return explain(cl, err)
		}
		for _, msg := range list.Items {
			if c.json {
				b, _ := json.Marshal(msg)
				fmt.Fprintf(m.stdout, "%s\n", b)
			} else {
				printMessage(m, msg)
			}
		}
		prev := q.After
		q.After, q.Oldest = list.Next, true
		if forward && list.HasMore && list.Next > prev {
			continue // the next page at once
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// parseSince reads --since: "" (everything), a duration back from now, an
// RFC 3339 time or epoch milliseconds.
func parseSince(s string, now time.Time) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil && ms >= 0 {
		return ms, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UnixMilli(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UnixMilli(), nil
	}
	return 0, fmt.Errorf("--since %q: expected a duration such as 10m, an RFC 3339 time such as 2026-01-02T15:04:05Z, or epoch milliseconds", s)
}

const messageLine = "%-20s  %-18s  %-16s  %s\n"

func printMessageHeader(m *Main) {
	fmt.Fprintf(m.stdout, messageLine, "RECEIVED", "SOURCE", "TYPE", "CONTENT")
}

// wireMessage is the part of a stored wire message the table shows.
type wireMessage struct {
	Source  string `json:"source"`
	Type    string `json:"type"`
	Payload struct {
		Format      string          `json:"format"`
		Data        json.RawMessage `json:"data"`
		Severity    string          `json:"severity"`
		Description string          `json:"description"`
		Method      string          `json:"method"`
		URL         string          `json:"url"`
		StatusCode  int             `json:"statusCode"`
		RequestID   string          `json:"requestId"`
		Value       struct {
			ReportType string            `json:"reportType"`
			Resources  []json.RawMessage `json:"resources"`
		} `json:"value"`
	} `json:"payload"`
}

func printMessage(m *Main, msg api.Message) {
	var w wireMessage
	json.Unmarshal(msg.Message, &w)
	var content string
	p := w.Payload
	switch w.Type {
	case "DATA":
		content = p.Format + " " + string(p.Data)
	case "ALERT":
		content = p.Format + " " + p.Severity
		if p.Description != "" {
			content += " " + strconv.Quote(p.Description)
		}
		if len(p.Data) > 0 {
			content += " " + string(p.Data)
		}
	case "REQUEST":
		content = p.Method + " " + p.URL
	case "RESPONSE":
		content = fmt.Sprintf("%d to request %s", p.StatusCode, p.RequestID)
	case "RESOURCES_REPORT":
		content = fmt.Sprintf("%s, %d resources", p.Value.ReportType, len(p.Value.Resources))
	default:
		content = string(msg.Message)
	}
	fmt.Fprintf(m.stdout, messageLine, msTime(msg.Received), orDash(w.Source), orDash(w.Type), strings.TrimSpace(content))
}
