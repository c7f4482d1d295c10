package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// writeMetrics writes st in the Prometheus text exposition format (0.0.4).
func writeMetrics(w io.Writer, st nodeStatus) {
	b := bufio.NewWriter(w)
	defer b.Flush()
	family := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	single := func(name, typ, help string, v any) {
		family(name, typ, help)
		fmt.Fprintf(b, "%s %v\n", name, v)
	}
	family("iotnode_build_info", "gauge", "The version of iotnode; always 1.")
	fmt.Fprintf(b, "iotnode_build_info{version=\"%s\"} 1\n", escapeLabel(versionString()))

	s := st.Stats
	single("iotnode_messages_queued_total", "counter", "Messages accepted into the outbox.", s.Queued)
	single("iotnode_messages_sent_total", "counter", "Messages the cloud acknowledged.", s.Sent)
	single("iotnode_messages_received_total", "counter", "Messages the cloud sent to the node.", s.Received)
	single("iotnode_messages_retried_total", "counter", "Messages sent again after a failed attempt.", s.Retried)
	single("iotnode_messages_dropped_total", "counter", "Messages dropped to make room (never guaranteed ones).", s.Dropped)
	single("iotnode_messages_dead_lettered_total", "counter", "Messages the cloud refused for good.", s.DeadLettered)
	single("iotnode_protocol_errors_total", "counter", "Failed exchanges with the cloud.", s.ProtocolErrors)
	single("iotnode_outbox_messages", "gauge", "Messages waiting in the outbox.", st.Outbox.Queued)
	single("iotnode_outbox_bytes", "gauge", "Encoded bytes of the messages waiting in the outbox.", st.Outbox.QueuedBytes)

	perDevice := []struct {
		name, typ, help string
		value           func(d deviceStatus) any
	}{
		{"iotnode_device_healthy", "gauge", "1 when the device's last sensor read succeeded.", func(d deviceStatus) any {
			if d.Healthy {
				return 1
			}
			return 0
		}},
		{"iotnode_device_reads_total", "counter", "Sensor reads.", func(d deviceStatus) any { return d.Reads }},
		{"iotnode_device_read_errors_total", "counter", "Sensor reads that failed.", func(d deviceStatus) any { return d.ReadErrors }},
		{"iotnode_device_values_published_total", "counter", "Attribute values queued for the cloud.", func(d deviceStatus) any { return d.Published }},
		{"iotnode_device_values_rejected_total", "counter", "Attribute values the model or the outbox refused.", func(d deviceStatus) any { return d.Rejected }},
		{"iotnode_device_commands_total", "counter", "Cloud commands (attribute sets, actions) executed.", func(d deviceStatus) any { return d.Commands }},
		{"iotnode_device_command_errors_total", "counter", "Cloud commands whose output failed.", func(d deviceStatus) any { return d.CmdErrors }},
	}
	for _, m := range perDevice {
		family(m.name, m.typ, m.help)
		for _, d := range st.Devices {
			fmt.Fprintf(b, "%s{device=\"%s\",endpoint_id=\"%s\"} %v\n", m.name, escapeLabel(d.Name), escapeLabel(d.Endpoint), m.value(d))
		}
	}
}

// escapeLabel escapes a label value: backslash, double quote and newline.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
