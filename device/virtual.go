package device

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

// Change is one attribute the cloud set.
type Change struct {
	// Name is the attribute's real name (never its alias).
	Name string
	// Old is the last-known value before the set (not Valid when there was
	// none); New is the value the cloud set, already checked against the
	// model.
	Old, New model.Value
}

// ChangeEvent is what OnChange and OnChangeAttribute callbacks receive: the
// attributes one cloud request set, in the request's order (one for an
// OnChangeAttribute callback).
type ChangeEvent struct {
	Device  *VirtualDevice
	Changes []Change
}

// ErrorEvent is what OnError callbacks receive: a message the cloud refused
// for good, a cloud failure that concerns the device, or a callback that
// panicked. Messages lists the messages concerned and may be empty.
type ErrorEvent struct {
	Device   *VirtualDevice
	Messages []message.Message
	Err      error
}

// Callable handles an action the cloud invoked. args holds the converted
// arguments by name (a legacy single-argument action has its argument
// under "value"; an action without arguments gets an empty map). A nil
// error answers 200; an error answers 500 with its text. ctx is canceled
// when the device closes.
type Callable func(ctx context.Context, args map[string]model.Value) error

// AttributeHandler applies a cloud-side set of one attribute (to the
// hardware, typically) before the set is committed; see
// VirtualDevice.SetAttributeHandler. A nil error lets the set go on; an
// error refuses it: the request answers 500 with the error's text.
type AttributeHandler func(ctx context.Context, c Change) error

// job is one event for a virtual device's callback goroutine.
type job func(ctx context.Context)

// VirtualDevice is one endpoint seen through one device model: the
// application sets attribute values, raises alerts and submits custom data
// through it, and receives the cloud's attribute sets and action calls as
// callbacks (Oracle's VirtualDevice). Build one with CreateVirtualDevice.
//
// Its methods are safe for concurrent use. Set, Update, Offer, Raise and
// Submit validate against the model and queue the message in the outbox:
// they return as soon as it is queued (for GUARANTEED_DELIVERY in a durable
// outbox, once it is on disk), also when the cloud is unreachable; failures
// to deliver reach OnError.
//
// Callbacks (attribute handlers, OnChange, OnChangeAttribute, callables,
// OnError) run on the virtual device's own callback goroutine, one event at
// a time in arrival order: never concurrently for one virtual device,
// concurrently with the callbacks of other virtual devices. A callback must not block for long:
// while it runs, later requests for the device wait (WithCallbackQueue). A
// callback may call the device's methods (Set, Get...). A panicking callback
// is recovered and logged; the request answers 500 and OnError receives an
// error naming the callback.
type VirtualDevice struct {
	p        *dispatcher
	endpoint string
	model    *model.DeviceModel
	log      *slog.Logger
	jobs     chan job      // events for the callback goroutine; closed by the dispatcher's close
	done     chan struct{} // closed when the callback goroutine returns

	postMu     sync.Mutex // guards sends on jobs that do not wait, and jobsClosed
	jobsClosed bool

	mu    sync.Mutex // guards state and pol's engine
	state *virtual.Device
	pol   policyState // the device policy (policy.go)

	cbMu      sync.Mutex // guards the callbacks
	onChange  func(ChangeEvent)
	onAttr    map[string]func(ChangeEvent) // by real attribute name
	handlers  map[string]AttributeHandler  // by real attribute name
	callables map[string]Callable          // by real action name
	onError   func(ErrorEvent)
}

// EndpointID returns the endpoint the virtual device stands for.
func (v *VirtualDevice) EndpointID() string { return v.endpoint }

// Model returns the device model; do not modify it.
func (v *VirtualDevice) Model() *model.DeviceModel { return v.model }

// Get returns the last-known value of the attribute name (or alias): the
// last one set by the application or the cloud, else the model's default.
// ok is false for an unknown attribute or one without a value.
func (v *VirtualDevice) Get(name string) (model.Value, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state.Get(name)
}

// Set checks value against the attribute name (or alias) and queues one
// DATA message (format "<urn>:attributes") that reports it. Errors: a value
// the model refuses, named by attribute (`attribute "humidity": 140 is out
// of range 0..100`), an outbox that cannot take the message (wrapping
// ports.ErrOutboxFull), or ErrClosed. The last-known value changes when the
// value is valid, even if the outbox then refuses the message.
//
// A *StorageObject value sets a URI attribute to the object's URI. When the
// object is InSync the message is queued at once; otherwise Set returns
// and the message is held until the object's sync ends (Set starts one
// when none is running): then it is queued and the last-known value
// changes, or, when the sync failed, OnError receives the error and the
// message (when the cloud named the object) and nothing is sent.
func (v *VirtualDevice) Set(name string, value any) error {
	op := fmt.Sprintf("set attribute %q", name)
	if err := v.open(op); err != nil {
		return err
	}
	if obj, ok := value.(*StorageObject); ok {
		return v.setStorageObject(op, name, obj)
	}
	v.mu.Lock()
	m, err := v.state.Set(name, value, v.p.dev.clock.Now())
	v.mu.Unlock()
	if err != nil {
		return err
	}
	return v.queue(op, m)
}

// open fails with ErrClosed once the device is closing.
func (v *VirtualDevice) open(op string) error {
	if v.p.dev.closing.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	return nil
}

func (v *VirtualDevice) queue(op string, m message.Message) error {
	if err := v.p.enqueue(m); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Update starts a batch of attribute sets that Finish sends as one DATA
// message. An Update belongs to the goroutine that builds it.
func (v *VirtualDevice) Update() *Update {
	v.mu.Lock()
	defer v.mu.Unlock()
	return &Update{v: v, u: v.state.Update()}
}

// Update collects attribute sets for one DATA message; build it with
// VirtualDevice.Update. It is not safe for concurrent use.
type Update struct {
	v *VirtualDevice
	u *virtual.Update
}

// Set adds the attribute name (or alias) with value; a later Set of the same
// attribute replaces the value. Errors are kept for Finish. It returns u.
func (u *Update) Set(name string, value any) *Update {
	u.u.Set(name, value)
	return u
}

// Finish queues one DATA message with every attribute set and makes them
// the last-known values. It fails, applying nothing, when any Set failed
// (every error, joined), when nothing was set, when called twice, and like
// VirtualDevice.Set when the message cannot be queued.
func (u *Update) Finish() error {
	const op = "update"
	if err := u.v.open(op); err != nil {
		return err
	}
	u.v.mu.Lock()
	m, err := u.u.Finish(u.v.p.dev.clock.Now())
	u.v.mu.Unlock()
	if err != nil {
		return err
	}
	return u.v.queue(op, m)
}

// Alert builds an ALERT message of one alert format of the model; build it
// with VirtualDevice.CreateAlert. It is not safe for concurrent use.
type Alert struct {
	v    *VirtualDevice
	b    *virtual.AlertBuilder
	err  error // the format is unknown
	urn  string
	objs objectFields // storage objects on URI fields (storage.go)
}

// CreateAlert returns a builder for the ALERT format formatURN of the
// model. An unknown format is reported by Raise.
func (v *VirtualDevice) CreateAlert(formatURN string) *Alert {
	v.mu.Lock()
	b, err := v.state.NewAlert(formatURN)
	v.mu.Unlock()
	return &Alert{v: v, b: b, err: err, urn: formatURN}
}

// Set sets the field name to value, checked by Raise. A *StorageObject
// on a URI field sets the object's URI, as VirtualDevice.Set does: Raise
// then holds the alert until the object is in sync. It returns a.
func (a *Alert) Set(name string, value any) *Alert {
	if a.b != nil {
		a.b.Set(name, a.objs.take(a.v.model, a.urn, name, value))
	}
	return a
}

// Severity sets the severity (LOW, NORMAL, SIGNIFICANT or CRITICAL); the
// default is SIGNIFICANT. It returns a.
func (a *Alert) Severity(s message.Severity) *Alert {
	if a.b != nil {
		a.b.Severity(s)
	}
	return a
}

// Description sets the description; the default is the format's. It
// returns a.
func (a *Alert) Description(s string) *Alert {
	if a.b != nil {
		a.b.Description(s)
	}
	return a
}

// Raise queues the ALERT (priority HIGHEST, GUARANTEED_DELIVERY). It fails
// for an unknown format, a field error or a missing required field (every
// problem, e.g. `alert "urn:...:too_humid": field "humidity" is required`),
// and like VirtualDevice.Set when the message cannot be queued. An Alert may
// be raised again: each Raise sends a new message.
func (a *Alert) Raise() error {
	op := fmt.Sprintf("raise alert %q", a.urn)
	if a.err != nil {
		return a.err
	}
	if err := a.v.open(op); err != nil {
		return err
	}
	a.v.mu.Lock()
	m, err := a.b.Build(a.v.p.dev.clock.Now())
	a.v.mu.Unlock()
	if err != nil {
		return err
	}
	return a.v.queueLinked(op, m, a.objs)
}

// Data builds a custom DATA message of one data format of the model; build
// it with VirtualDevice.CreateData. It is not safe for concurrent use.
type Data struct {
	v    *VirtualDevice
	b    *virtual.DataBuilder
	err  error
	urn  string
	objs objectFields // storage objects on URI fields (storage.go)
}

// CreateData returns a builder for the DATA format formatURN of the model.
// An unknown format is reported by Submit.
func (v *VirtualDevice) CreateData(formatURN string) *Data {
	v.mu.Lock()
	b, err := v.state.NewData(formatURN)
	v.mu.Unlock()
	return &Data{v: v, b: b, err: err, urn: formatURN}
}

// Set sets the field name to value, checked by Submit. A *StorageObject
// on a URI field is handled as by Alert.Set. It returns d.
func (d *Data) Set(name string, value any) *Data {
	if d.b != nil {
		d.b.Set(name, d.objs.take(d.v.model, d.urn, name, value))
	}
	return d
}

// Submit queues the DATA message. It fails like Alert.Raise.
func (d *Data) Submit() error {
	op := fmt.Sprintf("submit data %q", d.urn)
	if d.err != nil {
		return d.err
	}
	if err := d.v.open(op); err != nil {
		return err
	}
	d.v.mu.Lock()
	m, err := d.b.Build(d.v.p.dev.clock.Now())
	d.v.mu.Unlock()
	if err != nil {
		return err
	}
	return d.v.queueLinked(op, m, d.objs)
}

// OnChange sets the callback for cloud-side sets of any attribute: it
// receives every attribute of one request at once, after the
// OnChangeAttribute callbacks of those attributes. nil removes it. A set is
// answered 200 (and echoed in a DATA message) after the callbacks return.
//
// OnChange and OnChangeAttribute callbacks are told of a set that is
// already decided: they run only once every attribute handler of the
// request (SetAttributeHandler) succeeded, and cannot refuse it (a panic
// answers 500, but is a bug, not a refusal). To refuse a set the hardware
// cannot apply, use SetAttributeHandler.
func (v *VirtualDevice) OnChange(fn func(ChangeEvent)) {
	v.cbMu.Lock()
	defer v.cbMu.Unlock()
	v.onChange = fn
}

// OnChangeAttribute sets the callback for cloud-side sets of the attribute
// name (or alias); nil removes it. It fails for an attribute the model does
// not have.
func (v *VirtualDevice) OnChangeAttribute(name string, fn func(ChangeEvent)) error {
	a, ok := v.model.Attribute(name)
	if !ok {
		return fmt.Errorf("on change: attribute %q: not in device model %q", name, v.model.URN)
	}
	v.cbMu.Lock()
	defer v.cbMu.Unlock()
	if fn == nil {
		delete(v.onAttr, a.Name)
	} else {
		v.onAttr[a.Name] = fn
	}
	return nil
}

// SetAttributeHandler sets the handler that applies cloud-side sets of the
// attribute name (or alias), typically to an actuator output; nil removes
// it. It fails, changing nothing, for an attribute the model does not have
// and for a read-only one (the cloud cannot set it).
//
// For each cloud request that sets attributes, the handlers of the
// request's attributes run on the callback goroutine, in the request's
// order, before anything is committed:
//
//   - when every handler returns nil, the OnChangeAttribute and OnChange
//     callbacks run as usual, then the values are committed (Get returns
//     them), the request answers 200 and the new values are echoed in a
//     DATA message;
//   - when a handler returns an error or panics, the handlers after it do
//     not run, nothing is committed (Get keeps returning the old values),
//     no OnChange or OnChangeAttribute callback runs, no DATA is echoed, the
//     request answers 500 with the error's text and OnError receives the
//     error (no messages). A returned error is wrapped as `attribute
//     "power": <error>`; a panic reads `handler of attribute "power"
//     panicked: <value>`.
//
// A PATCH of several attributes is all-or-nothing for the device's state:
// one failing handler refuses every attribute of the request. The device
// cannot undo what the handlers before the failing one did to the
// hardware; a handler that must not leave a partial change undoes its
// own, or the application reports the hardware's real state with Set.
//
// ctx is canceled when the device closes (when Close ends its flush, as
// for a Callable) and when the request's handlers have run longer than
// the attribute handler timeout (WithAttributeHandlerTimeout, 30 s by
// default; all handlers of one request share it). A handler should return
// promptly once ctx is done: a handler that blocks holds the callback
// goroutine like any other callback.
//
// The name follows SetCallable rather than OnChangeAttribute on purpose:
// like a Callable, a handler decides the answer to the request, while the
// On* callbacks only learn of a set that is already decided.
func (v *VirtualDevice) SetAttributeHandler(name string, fn AttributeHandler) error {
	a, ok := v.model.Attribute(name)
	if !ok {
		return fmt.Errorf("set attribute handler: attribute %q: not in device model %q", name, v.model.URN)
	}
	if !a.Writable {
		return fmt.Errorf("set attribute handler: attribute %q: read-only in device model %q, the cloud cannot set it", a.Name, v.model.URN)
	}
	v.cbMu.Lock()
	defer v.cbMu.Unlock()
	if fn == nil {
		delete(v.handlers, a.Name)
	} else {
		v.handlers[a.Name] = fn
	}
	return nil
}

// SetCallable sets the handler of the action (name or alias); nil removes
// it. It fails for an action the model does not have. An action invoked
// without a handler is answered 404.
func (v *VirtualDevice) SetCallable(action string, fn Callable) error {
	a, ok := v.model.Action(action)
	if !ok {
		return fmt.Errorf("set callable: action %q: not in device model %q", action, v.model.URN)
	}
	v.cbMu.Lock()
	defer v.cbMu.Unlock()
	if fn == nil {
		delete(v.callables, a.Name)
	} else {
		v.callables[a.Name] = fn
	}
	return nil
}

// OnError sets the callback for errors that concern this virtual device
// and happen after its calls returned, with the messages concerned:
//   - the first failed send of an outage (the messages stay queued and are
//     retried with backoff; later failures of the same outage are logged);
//   - a message the cloud refused for good (dead-lettered, not retried);
//   - refused credentials: the circuit breaker opened (no messages);
//   - messages still queued when Close gave up (a durable outbox keeps them);
//   - a panicking callback (no messages);
//   - an attribute handler that refused a cloud set (no messages; see
//     SetAttributeHandler);
//   - device policies (no messages, unless one the policy produced could
//     not be queued): a policy that could not be fetched for good or that
//     does not compile (Offer then sends like Set), a problem the policy met
//     on a value, an action it called that failed or has no callable.
//
// nil removes it; errors are then only logged. Set it right after
// CreateVirtualDevice: the policy fetch starts then, and an error that
// comes before the callback is set is only logged.
func (v *VirtualDevice) OnError(fn func(ErrorEvent)) {
	v.cbMu.Lock()
	defer v.cbMu.Unlock()
	v.onError = fn
}

// run is the callback goroutine: it runs the events in order until the
// dispatcher closes jobs. ctx is the dispatcher's lifetime.
func (v *VirtualDevice) run(ctx context.Context) {
	defer close(v.done)
	for j := range v.jobs {
		j(ctx)
	}
}

// awaitDone waits until the callback goroutine returned, or ctx ended;
// it reports whether the goroutine returned. A goroutine that returned is
// reported so even when ctx ended too.
func (v *VirtualDevice) awaitDone(ctx context.Context) bool {
	select {
	case <-v.done:
		return true
	case <-ctx.Done():
	}
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// postRequest hands request r to the callback goroutine, waiting while its
// queue is full; when ctx (the request dispatcher's) ends first, the request
// is dropped.
func (v *VirtualDevice) postRequest(ctx context.Context, r request) {
	j := func(ctx context.Context) {
		defer v.p.inbox.release(r)
		if ctx.Err() != nil {
			v.p.dev.stats.dropped.Add(1)
			v.log.Warn("request dropped at close; the cloud times it out", "request_id", r.msg.ID)
			return
		}
		v.handle(ctx, &r.msg)
	}
	select {
	case v.jobs <- j:
	case <-ctx.Done():
		v.p.drop([]request{r})
	}
}

// postError hands an error event to the callback goroutine without
// waiting; when its queue is full (or closed) the event is logged and
// dropped.
func (v *VirtualDevice) postError(msgs []message.Message, err error) {
	if !v.post(func(context.Context) { v.deliverError(msgs, err) }) {
		v.log.Error("callback queue full: error event dropped", "messages", len(msgs), "error", err)
	}
}

// post hands j to the callback goroutine without waiting. It reports false
// when the queue is full or the dispatcher closed it (an Offer that raced
// with Close).
func (v *VirtualDevice) post(j job) bool {
	v.postMu.Lock()
	defer v.postMu.Unlock()
	if v.jobsClosed {
		return false
	}
	select {
	case v.jobs <- j:
		return true
	default:
		return false
	}
}

// closeJobs closes the callback queue: the callback goroutine returns once
// it ran what is queued. The dispatcher's close calls it, once.
func (v *VirtualDevice) closeJobs() {
	v.postMu.Lock()
	defer v.postMu.Unlock()
	v.jobsClosed = true
	close(v.jobs)
}

// handle runs one request on the callback goroutine: decide, run the
// callbacks, complete, queue the RESPONSE and the DATA echo.
func (v *VirtualDevice) handle(ctx context.Context, req *message.Message) {
	clock := v.p.dev.clock
	v.mu.Lock()
	out := v.state.HandleRequest(req, clock.Now())
	v.mu.Unlock()
	if out.Final() {
		v.log.Debug("request refused", "request_id", req.ID, "status", out.Response.Response.StatusCode)
		v.p.respond(*out.Response)
		return
	}
	var herr error
	if inv := out.Invocation; inv != nil {
		v.cbMu.Lock()
		fn := v.callables[inv.Action]
		v.cbMu.Unlock()
		if fn == nil {
			v.p.respond(v.p.response(req, virtual.StatusNotFound, fmt.Appendf(nil,
				"action %q: no callable set on the virtual device of %s for %s", inv.Action, v.endpoint, v.model.URN)))
			return
		}
		herr = v.protect(fmt.Sprintf("callable of action %q", inv.Action), func() error { return fn(ctx, inv.Args) })
	} else {
		herr = v.changed(ctx, req.ID, out.Changes)
	}
	v.mu.Lock()
	res := v.state.Complete(out, herr, clock.Now())
	v.mu.Unlock()
	v.p.respond(res.Response)
	if res.Data != nil {
		if err := v.p.enqueue(*res.Data); err != nil {
			v.log.Error("echo of the cloud's set not queued", "request_id", req.ID, "error", err)
		}
	}
}

// changed runs the attribute handlers, then the change callbacks, of a
// cloud set; the first handler error or panic ends it.
func (v *VirtualDevice) changed(ctx context.Context, requestID string, changes []virtual.Change) error {
	v.cbMu.Lock()
	handlers := maps.Clone(v.handlers)
	perAttr := maps.Clone(v.onAttr)
	all := v.onChange
	v.cbMu.Unlock()
	cs := make([]Change, len(changes))
	for i, c := range changes {
		cs[i] = Change(c)
	}
	if err := v.applyHandlers(ctx, requestID, handlers, cs); err != nil {
		return err
	}
	for _, c := range cs {
		fn := perAttr[c.Name]
		if fn == nil {
			continue
		}
		ev := ChangeEvent{Device: v, Changes: []Change{c}}
		if err := v.protect(fmt.Sprintf("OnChangeAttribute callback of attribute %q", c.Name),
			func() error { fn(ev); return nil }); err != nil {
			return err
		}
	}
	if all == nil {
		return nil
	}
	return v.protect("OnChange callback", func() error { all(ChangeEvent{Device: v, Changes: cs}); return nil })
}

// applyHandlers runs the attribute handlers of cs in order under one
// deadline (the attribute handler timeout) and returns the first failure:
// a returned error, wrapped with the attribute's name and handed to
// OnError, or a panic, which protect reports.
func (v *VirtualDevice) applyHandlers(ctx context.Context, requestID string, handlers map[string]AttributeHandler, cs []Change) error {
	if len(handlers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, v.p.set.handlerTimeout)
	defer cancel()
	for _, c := range cs {
		fn := handlers[c.Name]
		if fn == nil {
			continue
		}
		var herr error
		if err := v.protect(fmt.Sprintf("handler of attribute %q", c.Name),
			func() error { herr = fn(ctx, c); return nil }); err != nil {
			return err
		}
		if herr != nil {
			err := fmt.Errorf("attribute %q: %w", c.Name, herr)
			v.log.Debug("attribute handler refused a cloud set", "request_id", requestID, "attribute", c.Name, "error", herr)
			v.deliverError(nil, err)
			return err
		}
	}
	return nil
}

// protect runs an application callback; a panic becomes an error naming
// the callback, which is logged and handed to OnError.
func (v *VirtualDevice) protect(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", what, r)
			v.log.Error("callback panicked", "callback", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			v.deliverError(nil, err)
		}
	}()
	return fn()
}

// deliverError calls OnError on the callback goroutine; a panic there is
// logged only.
func (v *VirtualDevice) deliverError(msgs []message.Message, err error) {
	v.cbMu.Lock()
	fn := v.onError
	v.cbMu.Unlock()
	if fn == nil {
		v.log.Warn("error for a virtual device without an OnError callback", "messages", len(msgs), "error", err)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			v.log.Error("OnError callback panicked", "panic", fmt.Sprint(r), "error", err)
		}
	}()
	fn(ErrorEvent{Device: v, Messages: msgs, Err: err})
}
