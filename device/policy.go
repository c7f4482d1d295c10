package device

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/policy"
	"github.com/iotnode/iotnode/domain/virtual"
	"github.com/iotnode/iotnode/ports"
)

// Device policies (protocol.md §5). When Config.Policies is set, every
// virtual device has a policy goroutine (runPolicy) that fetches the policy
// of its (model, endpoint), compiles it and installs the engine; fetches it
// again when the cloud pushes policyChanged; and runs the engine's Tick
// when a window or a batch falls due. Offer runs the engine under the
// virtual device's lock; Set, Update and the builders never do.

// policyState is a virtual device's device policy. engine, id and raw are
// guarded by the virtual device's mu.
type policyState struct {
	engine *policy.Engine // nil: Offer sends like Set
	id     string         // of the installed policy
	raw    []byte         // the JSON the engine was compiled from

	log     *slog.Logger
	rearm   chan struct{} // 1 slot: the engine changed or was offered to, Next may have moved
	refetch chan struct{} // 1 slot: fetch the policy again (policyChanged)
}

// startPolicy starts the policy goroutine of v when the device has a
// PolicySource. The caller holds p.mu.
func (p *dispatcher) startPolicy(v *VirtualDevice) {
	v.pol.log = p.polLog.With("device_endpoint", v.endpoint, "urn", v.model.URN)
	if p.dev.cfg.Policies == nil || p.polStopped {
		return
	}
	v.pol.rearm = make(chan struct{}, 1)
	v.pol.refetch = make(chan struct{}, 1)
	p.polLoops.Add(1)
	go v.runPolicy(p.polCtx)
}

// stopPolicies stops every policy goroutine and waits for them; no policy
// goroutine starts after it. A fetch in flight is canceled.
func (p *dispatcher) stopPolicies() {
	p.mu.Lock()
	p.polStopped = true
	p.mu.Unlock()
	p.stopPol()
	p.polLoops.Wait()
}

// flushPolicies applies what every engine holds (windows cut short,
// batches released) and removes the engines, for Close: the policy
// goroutines have stopped.
func (p *dispatcher) flushPolicies() {
	p.mu.Lock()
	all := slices.Clone(p.all)
	p.mu.Unlock()
	for _, v := range all {
		v.setEngine(nil, "", nil)
	}
}

// PolicyID returns the id of the device policy that Offer applies, or ""
// when there is none (no Config.Policies, no policy assigned, not fetched
// yet, or one that could not be applied).
func (v *VirtualDevice) PolicyID() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pol.engine == nil {
		return ""
	}
	return v.pol.id
}

// Offer passes value through the device policy of the attribute name (or
// alias) before anything is sent (Oracle's offer): the policy may drop the
// value (filterCondition, sampleQuality, eliminateDuplicates), hold it
// (mean, min, max, standardDeviation windows; batchByTime, batchBySize,
// batchByCost), compute other attributes from it (computedMetric), raise
// alerts (alertCondition, detectDuplicates) or call the device's own
// actions (actionCondition).
//
// Without a policy Offer behaves exactly like Set: no Config.Policies, no
// policy assigned to the device, a policy that is disabled or could not be
// applied (reported to OnError), and until the policy is fetched, which
// happens in the background after CreateVirtualDevice.
//
// With a policy, value must have the attribute's type (the same errors as
// Set); its range is checked on what the policy lets through, so that a
// filterCondition can drop out-of-range readings (a value outside the range
// that gets through reaches OnError). The policy's effects are carried out:
//   - each payload it lets through is one DATA message ("<urn>:attributes")
//     whose eventTime is the time the values stand for (a window's end for
//     an aggregate); its values become the last-known values, as with Set.
//     A window or a batch that falls due is sent without a further Offer;
//   - each alert is queued as CreateAlert(...).Set(...).Raise() would
//     queue it;
//   - each action runs the Callable set for it (SetCallable) on the
//     callback goroutine, as if the cloud had invoked it; a missing
//     callable, bad arguments or an error it returns reach OnError;
//   - problems the policy meets (a formula that reads an attribute without
//     a value...) reach OnError; the value concerned is dropped.
//
// It returns ErrClosed after Close, a value the model refuses, and an
// error when a message it produced cannot be queued (wrapping
// ports.ErrOutboxFull). Close sends what the policy still holds.
func (v *VirtualDevice) Offer(name string, value any) error {
	op := fmt.Sprintf("offer attribute %q", name)
	if err := v.open(op); err != nil {
		return err
	}
	now := v.p.dev.clock.Now()
	v.mu.Lock()
	e := v.pol.engine
	if e == nil {
		m, err := v.state.Set(name, value, now)
		v.mu.Unlock()
		if err != nil {
			return err
		}
		return v.queue(op, m)
	}
	// The checks and texts of virtual.Device.Set.
	a, ok := v.model.Attribute(name)
	if !ok {
		v.mu.Unlock()
		return fmt.Errorf("attribute %q: not in device model %q", name, v.model.URN)
	}
	// Only the type is checked here: the policy sees a value outside the
	// model's range (its filterCondition may be there to drop such
	// readings), and the engine checks the range of what it lets through.
	val, err := a.Type.Convert(value)
	if err != nil {
		v.mu.Unlock()
		return fmt.Errorf("attribute %q: %w", a.Name, err)
	}
	fx := v.effectsLocked(e.Offer(now, map[string]model.Value{a.Name: val}, v.state.Get), now)
	v.mu.Unlock()
	v.rearmPolicy()
	return v.carryOut(op, fx)
}

// effects are what a policy outcome asks of the device: messages built
// (and their values committed) under the lock, actions and errors for the
// callback goroutine.
type effects struct {
	policyID string
	msgs     []message.Message
	actions  []policy.Action
	errs     []error
}

// effectsLocked builds the messages of out; v.mu is held.
func (v *VirtualDevice) effectsLocked(out policy.Outcome, now time.Time) effects {
	fx := effects{policyID: v.pol.id}
	wrap := func(err error) error { return fmt.Errorf("device policy %q: %w", v.pol.id, err) }
	for _, err := range out.Errors {
		fx.errs = append(fx.errs, wrap(err))
	}
	for _, d := range out.Data {
		if len(d.Values) == 0 {
			continue
		}
		u := v.state.Update()
		for _, name := range v.attributeOrder(d.Values) {
			u.Set(name, d.Values[name].Any())
		}
		m, err := u.Finish(orNow(d.Time, now))
		if err != nil {
			fx.errs = append(fx.errs, wrap(err))
			continue
		}
		fx.msgs = append(fx.msgs, m)
	}
	for _, a := range out.Alerts {
		b, err := v.state.NewAlert(a.FormatURN)
		if err != nil {
			fx.errs = append(fx.errs, wrap(err))
			continue
		}
		for _, name := range sortedKeys(a.Fields) {
			b.Set(name, a.Fields[name].Any())
		}
		b.Severity(message.Severity(a.Severity))
		m, err := b.Build(orNow(a.Time, now))
		if err != nil {
			fx.errs = append(fx.errs, wrap(err))
			continue
		}
		fx.msgs = append(fx.msgs, m)
	}
	fx.actions = out.Actions
	return fx
}

// attributeOrder returns the names of vals in the model's attribute order,
// unknown names last (Update reports them).
func (v *VirtualDevice) attributeOrder(vals map[string]model.Value) []string {
	pos := func(name string) int {
		return cmp.Or(slices.IndexFunc(v.model.Attributes, func(a model.Attribute) bool { return a.Name == name })+1,
			len(v.model.Attributes)+1)
	}
	names := sortedKeys(vals)
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(pos(a), pos(b)) })
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// carryOut queues the messages of fx and hands its actions and errors to
// the callback goroutine. It returns the queueing errors, prefixed with op;
// with op "" (no caller waits: a tick, a new policy, Close) they go to
// OnError with the messages concerned.
func (v *VirtualDevice) carryOut(op string, fx effects) error {
	var errs []error
	for _, m := range fx.msgs {
		if err := v.p.enqueue(m); err != nil {
			if op != "" {
				errs = append(errs, fmt.Errorf("%s: %w", op, err))
				continue
			}
			v.pol.log.Error("message of the device policy not queued", "error", err)
			v.postError([]message.Message{m}, err)
		}
	}
	for _, a := range fx.actions {
		if !v.post(func(ctx context.Context) { v.callAction(ctx, fx.policyID, a) }) {
			v.log.Error("callback queue full: action of the device policy dropped", "action", a.Name)
		}
	}
	for _, err := range fx.errs {
		v.log.Debug("device policy error", "error", err)
		v.postError(nil, err)
	}
	return errors.Join(errs...)
}

// callAction runs the callable of an action the policy called, on the
// callback goroutine; what goes wrong reaches OnError.
func (v *VirtualDevice) callAction(ctx context.Context, policyID string, a policy.Action) {
	fail := func(format string, args ...any) {
		v.deliverError(nil, fmt.Errorf("device policy %q: "+format, append([]any{policyID}, args...)...))
	}
	act, ok := v.model.Action(a.Name)
	if !ok {
		fail("action %q: not in device model %q", a.Name, v.model.URN)
		return
	}
	if len(a.Args) > len(act.Arguments) {
		fail("action %q: called with %d arguments, the action takes %d", act.Name, len(a.Args), len(act.Arguments))
		return
	}
	raw := make(map[string]any, len(a.Args))
	for i, arg := range a.Args {
		if arg.Valid() { // an argument left out takes its default
			raw[act.Arguments[i].Name] = arg.Any()
		}
	}
	args, err := act.ConvertArgs(raw)
	if err != nil {
		fail("%w", err)
		return
	}
	v.cbMu.Lock()
	fn := v.callables[act.Name]
	v.cbMu.Unlock()
	if fn == nil {
		fail("action %q: no callable set on the virtual device of %s for %s", act.Name, v.endpoint, v.model.URN)
		return
	}
	var cerr error
	if v.protect(fmt.Sprintf("callable of action %q", act.Name), func() error { cerr = fn(ctx, args); return nil }) != nil {
		return // reported by protect
	}
	if cerr != nil {
		fail("action %q: %w", act.Name, cerr)
	}
}

// rearmPolicy tells the policy goroutine that Next may have moved.
func (v *VirtualDevice) rearmPolicy() {
	select {
	case v.pol.rearm <- struct{}{}:
	default: // already rung, or no policy goroutine (nil channel)
	}
}

// refetchPolicy asks the policy goroutine to fetch the policy again.
func (v *VirtualDevice) refetchPolicy() {
	select {
	case v.pol.refetch <- struct{}{}:
	default:
	}
}

// minTick spaces Ticks when an engine keeps asking for a time already
// ticked, so that a misbehaving engine cannot spin the goroutine.
const minTick = time.Millisecond

// runPolicy is the policy goroutine of v, until ctx (the dispatcher's
// policy context) ends. It fetches the policy at once, again on
// policyChanged (one fetch at a time: a push during a fetch cancels it and
// fetches anew, as the push may name a newer policy), and runs Tick when
// the engine's Next falls due.
func (v *VirtualDevice) runPolicy(ctx context.Context) {
	defer v.p.polLoops.Done()
	clock := v.p.dev.clock
	type fetched struct {
		raw []byte
		err error
	}
	results := make(chan fetched, 1)
	var (
		fetching, again bool
		cancelFetch     context.CancelFunc = func() {}
	)
	fetch := func() {
		fctx, cancel := context.WithCancel(ctx)
		fetching, cancelFetch = true, cancel
		go func() {
			raw, err := v.fetchPolicy(fctx)
			results <- fetched{raw, err}
		}()
	}
	fetch()
	var lastTick time.Time
	for {
		var due <-chan time.Time
		v.mu.Lock()
		e := v.pol.engine
		var at time.Time
		ok := false
		if e != nil {
			at, ok = e.Next()
		}
		v.mu.Unlock()
		if ok {
			wait := at.Sub(clock.Now())
			if !at.After(lastTick) {
				wait = minTick
			}
			due = clock.After(max(wait, 0))
		}
		select {
		case <-ctx.Done():
			if fetching {
				<-results
			}
			return
		case <-due:
			lastTick = clock.Now()
			v.tick(lastTick)
		case <-v.pol.rearm:
		case <-v.pol.refetch:
			if fetching { // superseded: the push may name a newer policy
				again = true
				cancelFetch()
			} else {
				fetch()
			}
		case f := <-results:
			fetching = false
			cancelFetch()
			switch {
			case again:
				again = false
				fetch()
			case ctx.Err() == nil:
				v.install(f.raw, f.err)
			}
		}
	}
}

// tick runs the engine's Tick at now and carries out its outcome.
func (v *VirtualDevice) tick(now time.Time) {
	v.mu.Lock()
	e := v.pol.engine
	if e == nil {
		v.mu.Unlock()
		return
	}
	fx := v.effectsLocked(e.Tick(now, v.state.Get), now)
	v.mu.Unlock()
	v.carryOut("", fx)
}

// fetchPolicy fetches the raw policy of v, retrying with the dispatcher's
// backoff while the cloud cannot be reached. It returns the policy, an
// error wrapping ports.ErrNotFound when none is assigned, ctx's error, or a
// permanent error.
func (v *VirtualDevice) fetchPolicy(ctx context.Context) ([]byte, error) {
	src := v.p.dev.cfg.Policies
	for failures := 1; ; failures++ {
		raw, err := src.DevicePolicy(ctx, v.model.URN, v.endpoint)
		switch {
		case err == nil:
			return raw, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ports.ErrNotFound) || ports.IsPermanent(err):
			return nil, err
		}
		wait := v.p.set.backoffDelay(failures, retryAfter(err))
		if failures == 1 {
			v.pol.log.Warn("device policy not fetched; retrying with backoff", "error", err, "retry_in", wait)
		} else {
			v.pol.log.Debug("device policy still not fetched", "failures", failures, "error", err, "retry_in", wait)
		}
		v.p.sleep(ctx, wait)
	}
}

// install applies the result of a fetch: a policy replaces the engine
// (unless it is the one installed), none or a disabled one removes it, one
// that does not parse or compile removes it and is reported to OnError, a
// failed fetch is reported and changes nothing.
func (v *VirtualDevice) install(raw []byte, err error) {
	where := fmt.Sprintf("for model %q on device %s", v.model.URN, v.endpoint)
	switch {
	case errors.Is(err, ports.ErrNotFound):
		if v.setEngine(nil, "", nil) {
			v.pol.log.Info("device policy removed: none is assigned any more")
		} else {
			v.pol.log.Debug("no device policy assigned")
		}
		return
	case err != nil:
		err = fmt.Errorf("device policy %s not fetched, the current one stays: %w", where, err)
		v.pol.log.Error("device policy not fetched", "error", err)
		v.postError(nil, err)
		return
	}
	v.mu.Lock()
	same := v.pol.engine != nil && bytes.Equal(v.pol.raw, raw)
	v.mu.Unlock()
	if same {
		v.pol.log.Debug("device policy unchanged")
		return
	}
	p, err := policy.Parse(raw)
	var e *policy.Engine
	if err != nil {
		var head struct{ ID string } // name the policy when its id can be read
		if json.Unmarshal(raw, &head) == nil && head.ID != "" {
			where = fmt.Sprintf("%q %s", head.ID, where)
		}
	} else {
		where = fmt.Sprintf("%q %s", p.ID, where)
		if !p.Enabled {
			v.setEngine(nil, "", nil)
			v.pol.log.Info("device policy disabled: Offer sends like Set", "policy_id", p.ID)
			return
		}
		e, err = policy.Compile(p, v.model, policy.Options{NetworkCost: v.p.set.networkCost, Random: mrand.Float64})
	}
	if err != nil {
		v.setEngine(nil, "", nil)
		err = fmt.Errorf("device policy %s not applied, Offer sends like Set: %w", where, err)
		v.pol.log.Error("device policy not applied", "error", err)
		v.postError(nil, err)
		return
	}
	v.setEngine(e, p.ID, raw)
	v.pol.log.Info("device policy applied", "policy_id", p.ID, "pipelines", len(p.Pipelines))
}

// setEngine replaces the engine by e (nil removes it) after carrying out
// what the old one held (its Flush). It reports whether there was an old
// engine.
func (v *VirtualDevice) setEngine(e *policy.Engine, id string, raw []byte) bool {
	now := v.p.dev.clock.Now()
	v.mu.Lock()
	old := v.pol.engine
	var fx effects
	if old != nil {
		fx = v.effectsLocked(old.Flush(now, v.state.Get), now)
	}
	v.pol.engine, v.pol.id, v.pol.raw = e, id, raw
	v.mu.Unlock()
	v.carryOut("", fx)
	v.rearmPolicy()
	return old != nil
}

// policyChange is one entry of a policyChanged body.
type policyChange struct {
	DeviceModelURN string          `json:"deviceModelUrn"`
	ID             string          `json:"id"`
	LastModified   json.RawMessage `json:"lastModified"`
	Op             string          `json:"op"`
}

const policyChangedWant = `expected a JSON array [{"deviceModelUrn":"<urn>","id":"<policy id>","lastModified":<ms>,"op":"changed|assigned|unassigned"}, ...]`

// policyChanged takes the cloud's push of device policy changes
// (protocol.md §5): it answers 200 at once and has the policy goroutines
// of the virtual devices concerned fetch their policy again in the
// background (the answer decides: a policy replaces the engine, none
// removes it). changed and assigned concern every virtual device of the
// model (a gateway's ICDs among them); unassigned those whose installed
// policy has that id. An entry without deviceModelUrn concerns every
// model. The body is the JSON array (the message codec already decoded the
// wire's base64); a body that is itself base64 text is decoded once more.
// A body that is neither, or an unknown op, is answered 400.
func (p *dispatcher) policyChanged(_ context.Context, _ string, body []byte) (int, []byte) {
	changes, err := decodePolicyChanges(body)
	if err != nil {
		return badRequest("policyChanged: %v, %s", err, policyChangedWant)
	}
	p.mu.Lock()
	p.policyChanges++
	all := slices.Clone(p.all)
	p.mu.Unlock()
	if p.dev.cfg.Policies == nil {
		p.reqLog.Info("device policy changed; ignored: the device has no policy source (Config.Policies)", "changes", len(changes))
		return okStatus()
	}
	for _, c := range changes {
		n := 0
		for _, v := range all {
			if c.DeviceModelURN != "" && v.model.URN != c.DeviceModelURN {
				continue
			}
			if c.Op == "unassigned" && c.ID != "" {
				v.mu.Lock()
				mine := v.pol.engine != nil && v.pol.id == c.ID
				v.mu.Unlock()
				if !mine {
					continue
				}
			}
			v.refetchPolicy()
			n++
		}
		p.reqLog.Info("device policy changed", "op", c.Op, "policy_id", c.ID, "urn", c.DeviceModelURN, "virtual_devices", n)
	}
	return okStatus()
}

func okStatus() (int, []byte) { return virtual.StatusOK, okBody }

// decodePolicyChanges decodes a policyChanged body; ops are lowercased.
func decodePolicyChanges(body []byte) ([]policyChange, error) {
	orig := bytes.TrimSpace(body)
	body = orig
	if len(body) > 0 && body[0] != '[' {
		if dec, err := base64.StdEncoding.DecodeString(string(body)); err == nil {
			body = bytes.TrimSpace(dec)
		}
	}
	var changes []policyChange
	if len(body) == 0 || body[0] != '[' || json.Unmarshal(body, &changes) != nil {
		shown := string(orig)
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		return nil, fmt.Errorf("body %q is not an array of changes", shown)
	}
	for i := range changes {
		c := &changes[i]
		c.Op = strings.ToLower(c.Op)
		switch c.Op {
		case "changed", "assigned", "unassigned":
		default:
			return nil, fmt.Errorf("change %d: op %q is unknown", i, c.Op)
		}
	}
	return changes, nil
}
