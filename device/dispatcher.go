package device

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

// dispatcher is the message dispatcher of one activated device: the
// transmitter (outbox -> cloud), the receiver (cloud -> request buffer), the
// request dispatcher (request buffer -> capability resources and virtual
// devices) and the callback goroutine of each virtual device.
//
// Goroutines, all started by start or addVirtual and all stopped and
// awaited by close:
//
//	transmitter        transmit, until close asks it to flush and it is done
//	receiver           receive, until close cancels it
//	request dispatcher dispatchRequests, until close cancels it
//	connectivity test  runTest, one at a time, until done, stopped or closed
//	callbacks          one per virtual device (VirtualDevice.run)
//	device policies    one per virtual device when Config.Policies is set
//	                   (VirtualDevice.runPolicy, with its fetch in flight)
type dispatcher struct {
	dev      *DirectlyConnectedDevice
	set      *settings
	endpoint string
	started  time.Time
	txLog    *slog.Logger
	rxLog    *slog.Logger
	reqLog   *slog.Logger
	polLog   *slog.Logger

	// base is the lifetime of the dispatcher's goroutines, not a request's
	// context (like http.Server's BaseContext): the loops and the callables
	// derive their contexts from it, and close cancels it last. It is kept
	// here because virtual devices created later start goroutines under it.
	base    context.Context
	endBase context.CancelFunc
	stopRx  context.CancelFunc
	stopReq context.CancelFunc
	stopTx  context.CancelFunc
	polCtx  context.Context // of the policy goroutines
	stopPol context.CancelFunc
	flush   chan time.Time // close sends the flush deadline to the transmitter
	rxDone  chan struct{}
	reqDone chan struct{}
	txDone  chan struct{}
	unsent  error      // set by the transmitter before txDone is closed
	cut     sendCutter // cuts a send the flush deadline overtook
	tests   sync.WaitGroup
	// polLoops counts the policy goroutines and the goroutines that hold a
	// message until its storage object is synced; Add only under mu while
	// polStopped is false.
	polLoops sync.WaitGroup

	bell    chan struct{} // the transmitter's doorbell: something was queued
	inbox   *inbox
	breaker breaker
	poll    atomic.Int64 // polling interval, ns (the cloud may change it)

	mu            sync.Mutex
	closed        bool
	polStopped    bool                                 // stopPolicies ran: no policy goroutine starts
	vds           map[string]map[string]*VirtualDevice // endpoint -> model URN -> device
	all           []*VirtualDevice                     // in creation order
	test          *connTest                            // the current or last connectivity test
	policyChanges int
}

func newDispatcher(d *DirectlyConnectedDevice, endpoint string) *dispatcher {
	p := &dispatcher{
		dev:      d,
		set:      &d.set,
		endpoint: endpoint,
		txLog:    d.named("iotnode.dispatcher.transmitter").With("endpoint_id", endpoint),
		rxLog:    d.named("iotnode.dispatcher.receiver").With("endpoint_id", endpoint),
		reqLog:   d.named("iotnode.requests").With("endpoint_id", endpoint),
		polLog:   d.named("iotnode.policies").With("endpoint_id", endpoint),
		flush:    make(chan time.Time, 1),
		rxDone:   make(chan struct{}),
		reqDone:  make(chan struct{}),
		txDone:   make(chan struct{}),
		bell:     make(chan struct{}, 1),
		inbox:    newInbox(d.set.requestBufferSize),
		breaker:  breaker{threshold: d.set.authFailures, pause: d.set.authPause},
		vds:      map[string]map[string]*VirtualDevice{},
	}
	p.poll.Store(int64(d.set.pollingInterval))
	return p
}

// start starts the loops and queues the RESOURCES_REPORT of the device's
// own endpoint.
func (p *dispatcher) start() {
	p.started = p.dev.clock.Now()
	p.base, p.endBase = context.WithCancel(context.Background())
	var rxCtx, reqCtx, txCtx context.Context
	rxCtx, p.stopRx = context.WithCancel(p.base)
	reqCtx, p.stopReq = context.WithCancel(p.base)
	txCtx, p.stopTx = context.WithCancel(p.base)
	p.polCtx, p.stopPol = context.WithCancel(p.base)
	go p.transmit(txCtx)
	go p.receive(rxCtx)
	go p.dispatchRequests(reqCtx)
	p.queueReport(p.endpoint)
	p.ring() // send what a durable outbox kept from an earlier run
	p.dev.log.Info("message dispatcher started", "endpoint_id", p.endpoint,
		"long_polling", p.set.longPolling, "polling_interval", p.set.pollingInterval)
}

// ring wakes the transmitter without blocking.
func (p *dispatcher) ring() {
	select {
	case p.bell <- struct{}{}:
	default:
	}
}

// enqueue adds msgs to the outbox and wakes the transmitter. Add blocks only
// for the outbox's I/O; the error wraps ports.ErrOutboxFull when guaranteed
// messages do not fit.
func (p *dispatcher) enqueue(msgs ...message.Message) error {
	dropped, err := p.dev.outbox.Add(context.Background(), msgs...)
	if dropped > 0 {
		p.dev.stats.dropped.Add(uint64(dropped))
		p.txLog.Warn("outbox full: dropped the oldest best-effort messages", "dropped", dropped)
	}
	if err != nil {
		return fmt.Errorf("queue %d message(s): %w", len(msgs), err)
	}
	p.dev.stats.queued.Add(uint64(len(msgs)))
	p.ring()
	return nil
}

// queueReport queues the RESOURCES_REPORT of endpoint; a failure is logged.
func (p *dispatcher) queueReport(endpoint string) {
	if err := p.enqueue(p.report(endpoint)); err != nil {
		p.reqLog.Error("resources report not queued", "report_endpoint", endpoint, "error", err)
	}
}

// report returns a RESOURCES_REPORT (type UPDATE, priority HIGHEST) listing
// every resource registered for endpoint: the capability resources on the
// device's own endpoint and the attributes and actions of each of its
// virtual devices.
func (p *dispatcher) report(endpoint string) message.Message {
	var resources []message.Resource
	var paths []string
	add := func(path, methods string) {
		resources = append(resources, message.Resource{Name: path, Path: path, Methods: methods, Status: "ADDED"})
		paths = append(paths, path)
	}
	if endpoint == p.endpoint {
		for _, c := range capabilities {
			add(c.path, strings.Join(c.methods, ","))
		}
	}
	p.mu.Lock()
	var models []*model.DeviceModel
	for _, v := range p.vds[endpoint] {
		models = append(models, v.model)
	}
	p.mu.Unlock()
	slices.SortFunc(models, func(a, b *model.DeviceModel) int { return cmp.Compare(a.URN, b.URN) })
	for _, m := range models {
		prefix := "deviceModels/" + m.URN
		writable := false
		for _, a := range m.Attributes {
			if a.Writable {
				if !writable {
					add(prefix+"/attributes", "PATCH")
					writable = true
				}
				add(prefix+"/attributes/"+a.Name, "PUT")
			}
		}
		for _, a := range m.Actions {
			add(prefix+"/actions/"+a.Name, "POST")
		}
	}
	id := p.dev.newID()
	return message.Message{
		ID:          id,
		ClientID:    id,
		Source:      endpoint,
		Priority:    message.PriorityHighest,
		Reliability: message.BestEffort,
		EventTime:   p.dev.clock.Now(),
		Type:        message.TypeResourcesReport,
		Report: &message.ResourcesReport{
			ReportType:         message.ReportUpdate,
			EndpointName:       endpoint,
			Resources:          resources,
			ReconciliationMark: message.ReconciliationMark(paths),
		},
	}
}

// addVirtual returns the virtual device of (endpoint, m.URN), creating it,
// starting its callback goroutine and queuing its endpoint's report when it
// is new.
func (p *dispatcher) addVirtual(endpoint string, m *model.DeviceModel) (*VirtualDevice, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("create virtual device: %w", ErrClosed)
	}
	if v, ok := p.vds[endpoint][m.URN]; ok {
		p.mu.Unlock()
		return v, nil
	}
	v := &VirtualDevice{
		p:        p,
		endpoint: endpoint,
		model:    m,
		state: virtual.New(endpoint, m, p.dev.newID,
			virtual.WithDataQoS(p.set.dataQoS), virtual.WithAlertQoS(p.set.alertQoS)),
		jobs:      make(chan job, p.set.callbackQueue),
		done:      make(chan struct{}),
		log:       p.reqLog.With("device_endpoint", endpoint, "urn", m.URN),
		onAttr:    map[string]func(ChangeEvent){},
		handlers:  map[string]AttributeHandler{},
		callables: map[string]Callable{},
	}
	if p.vds[endpoint] == nil {
		p.vds[endpoint] = map[string]*VirtualDevice{}
	}
	p.vds[endpoint][m.URN] = v
	p.all = append(p.all, v)
	go v.run(p.base)
	p.startPolicy(v)
	p.mu.Unlock()

	p.queueReport(endpoint)
	p.inbox.ring() // requests waiting for this handler are dispatched again
	return v, nil
}

// lookup returns the virtual device of endpoint and urn, or nil.
func (p *dispatcher) lookup(endpoint, urn string) *VirtualDevice {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.vds[endpoint][urn]
}

// owner returns the virtual device a message came from, or nil: by source
// endpoint, then by the model its format or URL names. Messages of the
// dispatcher itself (reports, capability answers, test messages) have none.
func (p *dispatcher) owner(m *message.Message) *VirtualDevice {
	p.mu.Lock()
	defer p.mu.Unlock()
	byURN := p.vds[m.Source]
	if len(byURN) == 0 {
		return nil
	}
	var format string
	switch {
	case m.Data != nil:
		format = m.Data.Format
	case m.Alert != nil:
		format = m.Alert.Format
	case m.Response != nil:
		if v := byURN[urnOf(m.Response.URL)]; v != nil {
			return v
		}
	}
	if format == "" {
		return nil
	}
	if urn, ok := strings.CutSuffix(format, ":attributes"); ok && byURN[urn] != nil {
		return byURN[urn]
	}
	for _, v := range byURN {
		if _, ok := v.model.Format(format); ok {
			return v
		}
	}
	return nil
}

// reportError hands err and the messages it concerns to the OnError
// callbacks of the virtual devices they came from. Messages without a
// virtual device (capability responses, reports) are logged.
func (p *dispatcher) reportError(msgs []message.Message, err error) {
	var order []*VirtualDevice
	byOwner := map[*VirtualDevice][]message.Message{}
	orphans := 0
	for i := range msgs {
		v := p.owner(&msgs[i])
		if v == nil {
			orphans++
			continue
		}
		if _, ok := byOwner[v]; !ok {
			order = append(order, v)
		}
		byOwner[v] = append(byOwner[v], msgs[i])
	}
	if orphans > 0 {
		p.txLog.Error("messages failed that no virtual device sent", "messages", orphans, "error", err)
	}
	for _, v := range order {
		v.postError(byOwner[v], err)
	}
}

// reportAll hands err to the OnError callback of every virtual device.
func (p *dispatcher) reportAll(err error) {
	p.mu.Lock()
	all := slices.Clone(p.all)
	p.mu.Unlock()
	for _, v := range all {
		v.postError(nil, err)
	}
	if len(all) == 0 {
		p.txLog.Error("cloud error with no virtual device to report it to", "error", err)
	}
}

// response returns the RESPONSE to req with status and body, for the
// requests that no virtual device answers (capability resources, unknown
// resources). Like virtual's responses: priority HIGH, BEST_EFFORT.
func (p *dispatcher) response(req *message.Message, status int, body []byte) message.Message {
	m := message.Message{
		ClientID:    p.dev.newID(),
		Source:      cmp.Or(req.Destination, p.endpoint),
		Destination: req.Source,
		Priority:    message.PriorityHigh,
		Reliability: message.BestEffort,
		EventTime:   p.dev.clock.Now(),
		Type:        message.TypeResponse,
		Response:    &message.Response{StatusCode: status, RequestID: req.ID, Body: body},
	}
	if req.Request != nil {
		m.Response.URL = req.Request.URL
	}
	return m
}

// respond queues a response; a failure is logged (the cloud times the
// request out).
func (p *dispatcher) respond(m message.Message) {
	if err := p.enqueue(m); err != nil {
		p.reqLog.Error("response not queued", "request_id", m.Response.RequestID, "status", m.Response.StatusCode, "error", err)
	}
}

// received counts what the cloud sent and hands the requests to the
// request dispatcher.
func (p *dispatcher) received(log *slog.Logger, in []message.Message) {
	for i := range in {
		m := &in[i]
		p.dev.stats.received.Add(1)
		p.dev.stats.bytesReceived.Add(uint64(max(message.EncodedSize(m), 0)))
		if m.Type != message.TypeRequest || m.Request == nil {
			log.Warn("ignored a message from the cloud that is not a request", "type", m.Type, "id", m.ID)
			continue
		}
		log.Debug("request received", "request_id", m.ID, "destination", m.Destination,
			"method", m.Request.EffectiveMethod(), "url", m.Request.URL)
		p.inbox.push(*m)
	}
}

// sleep waits d on the device's clock, or until ctx ends.
func (p *dispatcher) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-p.dev.clock.After(d):
	case <-ctx.Done():
	}
}

// close stops the dispatcher as Device.Close documents, within one
// deadline: the earlier of ctx's and now + the close timeout. The budget
// has two phases:
//
//   - until flushBy (the deadline less closeReserve), the callback
//     goroutines finish the requests they hold and the transmitter sends
//     what is queued. When flushBy passes, a send still in flight is cut
//     (its messages stay in the outbox), and the transmitter reports what
//     is left to OnError;
//   - the rest is for the callback goroutines: they deliver their last
//     events (that report among them) and return, awaited until the
//     deadline.
//
// The receiver, the request dispatcher and the transmitter return promptly
// once canceled, so close waits for them unconditionally after canceling
// them; only the callbacks, which run application code, may outlive it.
func (p *dispatcher) close(ctx context.Context) error {
	clock := p.dev.clock
	budget := p.set.closeTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl))
	}
	budget = max(budget, 0)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	flushBy := clock.Now().Add(budget - closeReserve(budget))

	p.stopRx()
	p.stopReq() // also stops a running connectivity test
	<-p.rxDone
	<-p.reqDone
	p.tests.Wait()
	p.stopPolicies()
	p.flushPolicies() // what the policies hold goes out with the final flush
	p.quiesce(ctx, flushBy)
	p.flush <- flushBy
	select {
	case <-p.txDone:
	case <-clock.After(flushBy.Sub(clock.Now())):
		// The transmitter's own sends and waits end at flushBy, except a
		// send begun before it learnt of the flush.
		p.cut.cut()
		select {
		case <-p.txDone:
		case <-ctx.Done():
			p.stopTx()
			<-p.txDone
		}
	case <-ctx.Done():
		p.stopTx()
		<-p.txDone
	}
	p.endBase()

	p.mu.Lock()
	p.closed = true
	all := slices.Clone(p.all)
	p.mu.Unlock()
	for _, v := range all {
		v.closeJobs()
	}
	var errs []error
	if p.unsent != nil {
		errs = append(errs, p.unsent)
	}
	for _, v := range all {
		if !v.awaitDone(ctx) {
			why := "the close deadline passed"
			if errors.Is(ctx.Err(), context.Canceled) {
				why = "Close's context was canceled"
			}
			errs = append(errs, fmt.Errorf("the callback goroutine of virtual device %s (%s) was still running when %s (a callback blocks): %w",
				v.endpoint, v.model.URN, why, ctx.Err()))
		}
	}
	p.dev.log.Info("message dispatcher stopped", "endpoint_id", p.endpoint, "clean", len(errs) == 0)
	return errors.Join(errs...)
}

// closeReserve returns the share of a Close budget kept for the callback
// goroutines after the flush, so that they deliver the last error events
// (the report of what was left unsent) before Close returns: a tenth of
// the budget, at most a second. Close returns as soon as they are done, so
// the reserve costs only flush time.
func closeReserve(budget time.Duration) time.Duration {
	return min(budget/10, time.Second)
}

// quiesce waits, until flushBy at most, for every callback goroutine to
// finish the requests it holds, so that their answers are queued before
// the transmitter's last flush. The request dispatcher has stopped: nothing
// queues requests any more.
func (p *dispatcher) quiesce(ctx context.Context, flushBy time.Time) {
	p.mu.Lock()
	all := slices.Clone(p.all)
	p.mu.Unlock()
	timeout := p.dev.clock.After(flushBy.Sub(p.dev.clock.Now()))
	for _, v := range all {
		barrier := make(chan struct{})
		select {
		case v.jobs <- func(context.Context) { close(barrier) }:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
		select {
		case <-barrier:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// urnOf returns the model URN of a "deviceModels/<urn>/..." URL, or "".
func urnOf(url string) string {
	rest, ok := strings.CutPrefix(strings.Trim(url, "/"), "deviceModels/")
	if !ok {
		return ""
	}
	urn, _, _ := strings.Cut(rest, "/")
	return urn
}
