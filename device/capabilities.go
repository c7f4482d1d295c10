package device

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

// Status codes of capability answers beyond those of domain/virtual.
const statusConflict = 409

// okBody is the body of a 200 answer without content, as Oracle's JS
// library sends it.
var okBody = []byte("OK")

// capability is one built-in resource of the device's own endpoint
// (protocol.md §8).
type capability struct {
	path    string
	methods []string // announced in the RESOURCES_REPORT
	accept  []string // accepted; nil means methods
	serve   func(p *dispatcher, ctx context.Context, method string, body []byte) (int, []byte)
}

// capabilities are announced in this order in the RESOURCES_REPORT.
var capabilities = []*capability{
	{path: "deviceModels/" + model.CapDevicePolicy + "/policyChanged", methods: []string{"PUT"}, accept: []string{"PUT", "POST"}, serve: (*dispatcher).policyChanged},
	{path: "deviceModels/" + model.CapMessageDispatcher + "/counters", methods: []string{"GET"}, serve: (*dispatcher).counters},
	{path: "deviceModels/" + model.CapMessageDispatcher + "/reset", methods: []string{"PUT"}, serve: (*dispatcher).resetCounters},
	{path: "deviceModels/" + model.CapMessageDispatcher + "/pollingInterval", methods: []string{"GET", "PUT"}, serve: (*dispatcher).pollingInterval},
	{path: "deviceModels/" + model.CapDiagnostics + "/info", methods: []string{"GET"}, serve: (*dispatcher).info},
	{path: "deviceModels/" + model.CapDiagnostics + "/testConnectivity", methods: []string{"GET", "PUT"}, serve: (*dispatcher).testConnectivity},
}

// capabilityAt returns the capability resource at url (no leading or
// trailing slash), or nil.
func capabilityAt(url string) *capability {
	for _, c := range capabilities {
		if c.path == url {
			return c
		}
	}
	return nil
}

// serveCapability checks the method and calls the handler. policyChanged
// also accepts POST: Oracle's JS library expects POST there, Java takes
// whatever comes.
func (p *dispatcher) serveCapability(ctx context.Context, c *capability, m *message.Message) (int, []byte) {
	method := m.Request.EffectiveMethod()
	allowed := c.accept
	if allowed == nil {
		allowed = c.methods
	}
	if !slices.Contains(allowed, method) {
		if method == "" {
			method = `""`
		}
		return virtual.StatusMethodNotAllowed, fmt.Appendf(nil, "%s: method %s not allowed, expected %s",
			c.path, method, strings.Join(allowed, " or "))
	}
	return c.serve(p, ctx, method, m.Request.Body)
}

// jsonAnswer returns 200 with v as JSON.
func jsonAnswer(v any) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		return virtual.StatusInternalServerError, fmt.Appendf(nil, "encode answer: %v", err)
	}
	return virtual.StatusOK, b
}

func badRequest(format string, args ...any) (int, []byte) {
	return virtual.StatusBadRequest, fmt.Appendf(nil, format, args...)
}

// countersBody is the answer of message_dispatcher/counters: Oracle's six
// totals plus the outbox's.
type countersBody struct {
	TotalMessagesSent         uint64 `json:"totalMessagesSent"`
	TotalMessagesReceived     uint64 `json:"totalMessagesReceived"`
	TotalMessagesRetried      uint64 `json:"totalMessagesRetried"`
	TotalBytesSent            uint64 `json:"totalBytesSent"`
	TotalBytesReceived        uint64 `json:"totalBytesReceived"`
	TotalProtocolErrors       uint64 `json:"totalProtocolErrors"`
	TotalMessagesQueued       uint64 `json:"totalMessagesQueued"`
	TotalMessagesDropped      uint64 `json:"totalMessagesDropped"`
	TotalMessagesDeadLettered uint64 `json:"totalMessagesDeadLettered"`
}

func (p *dispatcher) counters(context.Context, string, []byte) (int, []byte) {
	s := p.dev.stats.snapshot()
	return jsonAnswer(countersBody{
		TotalMessagesSent:         s.Sent,
		TotalMessagesReceived:     s.Received,
		TotalMessagesRetried:      s.Retried,
		TotalBytesSent:            s.BytesSent,
		TotalBytesReceived:        s.BytesReceived,
		TotalProtocolErrors:       s.ProtocolErrors,
		TotalMessagesQueued:       s.Queued,
		TotalMessagesDropped:      s.Dropped,
		TotalMessagesDeadLettered: s.DeadLettered,
	})
}

func (p *dispatcher) resetCounters(context.Context, string, []byte) (int, []byte) {
	p.dev.stats.reset()
	return virtual.StatusOK, okBody
}

// pollingInterval answers GET with both spellings, {"pollingInterval":ms,
// "value":ms} (JS reads the first, Java the second), and takes either on
// PUT. The cloud cannot set less than 1000 ms (Oracle's floor): a smaller
// value is raised to it.
func (p *dispatcher) pollingInterval(_ context.Context, method string, body []byte) (int, []byte) {
	if method == "GET" {
		ms := time.Duration(p.poll.Load()).Milliseconds()
		return jsonAnswer(map[string]int64{"pollingInterval": ms, "value": ms})
	}
	const want = `expected {"pollingInterval": <ms>} or {"value": <ms>} with a whole number of milliseconds, 0 or more`
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		return badRequest("pollingInterval: body is not a JSON object, %s", want)
	}
	raw, ok := in["pollingInterval"]
	if !ok {
		raw, ok = in["value"]
	}
	var ms int64
	if !ok || json.Unmarshal(raw, &ms) != nil || ms < 0 {
		return badRequest("pollingInterval: body %s, %s", bytes.TrimSpace(body), want)
	}
	d := max(time.Duration(ms)*time.Millisecond, minPollingInterval)
	p.poll.Store(int64(d))
	p.rxLog.Info("polling interval changed by the cloud", "polling_interval", d)
	return virtual.StatusOK, okBody
}

// info answers diagnostics/info: the disk space of the data directory, the
// first network interface that is up and not loopback, the library version
// and the dispatcher's start time (epoch ms). What cannot be found reads
// "Unknown", as in Oracle's JS library.
func (p *dispatcher) info(context.Context, string, []byte) (int, []byte) {
	out := map[string]any{
		"freeDiskSpace":  "Unknown",
		"totalDiskSpace": "Unknown",
		"version":        libraryVersion(),
		"startTime":      p.started.UnixMilli(),
	}
	dir := p.dev.cfg.DataDir
	if dir == "" {
		dir = "."
	}
	if free, total, err := diskSpace(dir); err == nil {
		out["freeDiskSpace"], out["totalDiskSpace"] = free, total
	} else {
		p.reqLog.Debug("disk space unknown", "dir", dir, "error", err)
	}
	out["ipAddress"], out["macAddress"] = netIdentity()
	return jsonAnswer(out)
}

// modulePath is this module, whose version info reports.
const modulePath = "github.com/iotnode/iotnode"

// libraryVersion returns the module version the binary was built with,
// "(devel)" for a local build, or "Unknown".
func libraryVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "Unknown"
	}
	if bi.Main.Path == modulePath && bi.Main.Version != "" {
		return bi.Main.Version
	}
	for _, dep := range bi.Deps {
		if dep.Path == modulePath {
			return dep.Version
		}
	}
	return "Unknown"
}

// netIdentity returns the IP address (IPv4 preferred) and MAC address of
// the first interface that is up and not loopback, or "Unknown".
func netIdentity() (ip, mac string) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "Unknown", "Unknown"
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		var first net.IP
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ipn.IP.To4() != nil {
				first = ipn.IP
				break
			}
			if first == nil {
				first = ipn.IP
			}
		}
		if first == nil {
			continue
		}
		mac = ifc.HardwareAddr.String()
		if mac == "" {
			mac = "Unknown"
		}
		return first.String(), mac
	}
	return "Unknown", "Unknown"
}

// Bounds of a connectivity test.
const (
	maxTestCount  = 1_000_000
	minTestPeriod = time.Second // Oracle's floor for the interval
)

// connTest is the state of one connectivity test; the dispatcher's mu
// guards it.
type connTest struct {
	active   bool
	count    int64
	current  int64
	interval time.Duration
	size     int64
	stop     context.CancelFunc
}

// testConnectivity answers diagnostics/testConnectivity (protocol.md §8):
// GET returns {active, count, currentCount, interval, size}; PUT
// {"active":true,"count":N,"interval":ms,"size":bytes} starts a test (409
// while one runs) that sends count DATA messages of format test_message, one
// per interval (at least 1000 ms, Oracle's floor), each carrying current
// (1..count), count and a payload of size "*" characters, at priority
// LOWEST; PUT {"active":false} stops it.
func (p *dispatcher) testConnectivity(ctx context.Context, method string, body []byte) (int, []byte) {
	if method == "GET" {
		p.mu.Lock()
		t := p.test
		if t == nil {
			t = &connTest{}
		}
		out := map[string]any{"active": t.active, "count": t.count, "currentCount": t.current,
			"interval": t.interval.Milliseconds(), "size": t.size}
		p.mu.Unlock()
		return jsonAnswer(out)
	}
	const want = `expected {"active":true,"count":<1..1000000>,"interval":<ms>,"size":<0..65536>} or {"active":false}`
	var in struct {
		Active   *bool  `json:"active"`
		Count    *int64 `json:"count"`
		Interval *int64 `json:"interval"`
		Size     *int64 `json:"size"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Active == nil {
		return badRequest("testConnectivity: body %s, %s", bytes.TrimSpace(body), want)
	}
	if !*in.Active {
		p.mu.Lock()
		if t := p.test; t != nil && t.active {
			t.active = false
			t.stop()
		}
		p.mu.Unlock()
		return virtual.StatusOK, okBody
	}
	var errs []error
	if in.Count == nil || *in.Count < 1 || *in.Count > maxTestCount {
		errs = append(errs, errors.New("count"))
	}
	if in.Interval == nil || *in.Interval < 0 {
		errs = append(errs, errors.New("interval"))
	}
	if in.Size == nil || *in.Size < 0 || *in.Size > model.MaxStringBytes {
		errs = append(errs, errors.New("size"))
	}
	if len(errs) > 0 {
		names := make([]string, len(errs))
		for i, e := range errs {
			names[i] = e.Error()
		}
		return badRequest("testConnectivity: %s missing or out of range, %s", strings.Join(names, ", "), want)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.test != nil && p.test.active {
		return statusConflict, []byte("testConnectivity: a test is running; stop it first with {\"active\":false}")
	}
	testCtx, stop := context.WithCancel(ctx)
	t := &connTest{active: true, count: *in.Count, interval: max(time.Duration(*in.Interval)*time.Millisecond, minTestPeriod),
		size: *in.Size, stop: stop}
	p.test = t
	p.tests.Add(1)
	go p.runTest(testCtx, t)
	return virtual.StatusOK, okBody
}

// runTest sends the messages of connectivity test t until it is done,
// stopped or the dispatcher closes.
func (p *dispatcher) runTest(ctx context.Context, t *connTest) {
	defer p.tests.Done()
	defer func() {
		p.mu.Lock()
		t.active = false
		p.mu.Unlock()
		t.stop()
	}()
	p.mu.Lock()
	count, interval, size := t.count, t.interval, t.size
	p.mu.Unlock()
	payload := strings.Repeat("*", int(size))
	for i := int64(1); i <= count; i++ {
		select {
		case <-p.dev.clock.After(interval):
		case <-ctx.Done():
			return
		}
		m := message.Message{
			ClientID:    p.dev.newID(),
			Source:      p.endpoint,
			Priority:    message.PriorityLowest,
			Reliability: message.BestEffort,
			EventTime:   p.dev.clock.Now(),
			Type:        message.TypeData,
			Data: &message.Data{Format: model.FormatTestMessage, Fields: []message.Field{
				{Name: "current", Value: i}, {Name: "count", Value: count}, {Name: "payload", Value: payload},
			}},
		}
		if err := p.enqueue(m); err != nil {
			p.reqLog.Warn("connectivity test message not queued", "current", i, "error", err)
		}
		p.mu.Lock()
		t.current = i
		p.mu.Unlock()
	}
}
