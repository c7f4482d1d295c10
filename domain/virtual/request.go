package virtual

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// The status codes a Device answers with (protocol.md §3c).
//
// Bad input, a set of a read-only attribute included, answers 400 with the
// reason in the body (Oracle's JS library answers 403 "Bad Request" with no
// reason; 400 is what the status means, and the cloud treats both alike).
// A read-only attribute answers 400 rather than 405 because the method is
// right for the resource kind and one PATCH may mix writable and read-only
// attributes: the same fault gets the same code in both forms.
const (
	StatusOK                  = 200
	StatusBadRequest          = 400
	StatusNotFound            = 404
	StatusMethodNotAllowed    = 405
	StatusInternalServerError = 500
)

// okBody is the body of every 200 RESPONSE, as Oracle's JS library sends it
// (protocol.md §11).
const okBody = "OK"

// Change is one attribute set accepted from the cloud, not yet committed.
type Change struct {
	// Name is the attribute's real name (never its alias).
	Name string
	// Old is the last-known value when the request arrived (not Valid when
	// the attribute had none); New is the requested value, already checked.
	Old, New model.Value
}

// Invocation is one accepted action call.
type Invocation struct {
	// Action is the action's real name (never its alias).
	Action string
	// Args are the converted arguments by argument name; a legacy
	// single-argument action has its one argument under "value"; an action
	// without arguments has an empty map.
	Args map[string]model.Value
}

// Outcome is what HandleRequest decided about one REQUEST. Exactly one of
// these holds:
//
//   - Final() is true: Response is the RESPONSE to send and there is nothing
//     to run (the request was refused, or was not understood);
//   - Changes is non-empty: the application runs its on-change callbacks,
//     then calls Complete;
//   - Invocation is non-nil: the application runs the action's callable,
//     then calls Complete.
type Outcome struct {
	// Request is the REQUEST being answered. HandleRequest does not modify it.
	Request *message.Message
	// Response is set only on a final outcome.
	Response *message.Message
	// Changes lists the accepted sets in the order of the request body.
	// Every attribute in the request is listed, even one whose value did not
	// change, like Oracle's libraries do.
	Changes []Change
	// Invocation is the accepted action call.
	Invocation *Invocation
}

// Final reports whether o already holds its RESPONSE, leaving nothing to run.
func (o Outcome) Final() bool { return o.Response != nil }

// Result is what Complete returns: the messages to send.
type Result struct {
	// Response is the RESPONSE to the request: 200 with body "OK", 500 with
	// the handler's error text, or the response of a final Outcome.
	Response message.Message
	// Data, set only for an accepted and successfully handled attribute set,
	// is the DATA message that echoes the new values (format
	// "<urn>:attributes", every attribute of the request, real names). It is
	// nil when the message could not be made (newID is nil); the state is
	// committed all the same.
	Data *message.Message
}

// HandleRequest decides what to do with a REQUEST from the cloud. It never
// changes the Device: accepted sets are committed by Complete.
//
// Understood URLs (a leading or trailing "/" is tolerated):
//
//	deviceModels/<urn>/attributes/<name|alias>  PUT, body {"value": v}
//	deviceModels/<urn>/attributes               PATCH (also POST or PUT with the
//	                                            header x-http-method-override: PATCH),
//	                                            body {"a": v1, "b": v2}
//	deviceModels/<urn>/actions/<name|alias>     POST, body {"value": v} (legacy
//	                                            single argument), {"arg": v, ...}
//	                                            (arguments), or empty (none)
//
// Actions accept POST only, like Oracle's JS library, which answers 405 to
// any other method.
//
// A final Outcome answers 404 for a URL that is not one of the above, names
// another device model or another endpoint, or names an unknown attribute or
// action; 405 for a wrong method; 400 for a body that is not a JSON object of
// the expected shape, an unknown or read-only attribute in a PATCH, a read-only
// attribute, or a value the model refuses. The body of every refusal is the
// reason, e.g. `attribute "humidity": 140 is out of range 0..100`.
func (d *Device) HandleRequest(req *message.Message, now time.Time) Outcome {
	o := Outcome{Request: req}
	status, err := d.decide(req, &o)
	if err != nil {
		resp := d.response(req, status, []byte(err.Error()), now)
		o.Response, o.Changes, o.Invocation = &resp, nil, nil
	}
	return o
}

// decide fills o.Changes or o.Invocation, or returns the status and reason
// of a refusal.
func (d *Device) decide(req *message.Message, o *Outcome) (int, error) {
	if req == nil || req.Type != message.TypeRequest || req.Request == nil {
		return StatusBadRequest, errors.New("request: not a REQUEST message with a request payload")
	}
	if req.Destination != "" && req.Destination != d.endpointID {
		return StatusNotFound, fmt.Errorf("request: destination %q is not endpoint %q", req.Destination, d.endpointID)
	}
	url := req.Request.URL
	urn, kind, name, ok := splitURL(url)
	if !ok {
		return StatusNotFound, fmt.Errorf("url %q: not a resource of device model %q, expected deviceModels/<urn>/attributes[/<name>] or deviceModels/<urn>/actions/<name>", url, d.model.URN)
	}
	if urn != d.model.URN {
		return StatusNotFound, fmt.Errorf("url %q: device model %q is not the model of this device, expected %q", url, urn, d.model.URN)
	}
	method := strings.ToUpper(req.Request.EffectiveMethod())
	switch {
	case kind == "actions":
		return d.decideAction(name, method, req.Request.Body, o)
	case name == "":
		return d.decidePatch(method, req.Request.Body, o)
	default:
		return d.decidePut(name, method, req.Request.Body, o)
	}
}

// splitURL splits "deviceModels/<urn>/<kind>[/<name>]". kind is "attributes"
// (name may be empty) or "actions" (name is not empty).
func splitURL(url string) (urn, kind, name string, ok bool) {
	rest, found := strings.CutPrefix(strings.Trim(url, "/"), "deviceModels/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[1] == "attributes":
		return parts[0], parts[1], "", parts[0] != ""
	case len(parts) == 3 && (parts[1] == "attributes" || parts[1] == "actions"):
		return parts[0], parts[1], parts[2], parts[0] != "" && parts[2] != ""
	}
	return "", "", "", false
}

// methodError is the 405 reason.
func methodError(what, method, want string) error {
	if method == "" {
		method = `""`
	}
	return fmt.Errorf("%s: method %s not allowed, expected %s", what, method, want)
}

// decidePut handles PUT deviceModels/<urn>/attributes/<name>.
func (d *Device) decidePut(nameOrAlias, method string, body []byte, o *Outcome) (int, error) {
	a, err := d.attribute(nameOrAlias)
	if err != nil {
		return StatusNotFound, err
	}
	what := fmt.Sprintf("attribute %q", a.Name)
	if method != "PUT" {
		return StatusMethodNotAllowed, methodError(what, method, "PUT")
	}
	if err := d.writable(a); err != nil {
		return StatusBadRequest, err
	}
	fields, err := decodeObject(body)
	if err == nil && (len(fields) != 1 || fields[0].name != "value") {
		err = errors.New(keysOf(fields))
	}
	if err != nil {
		return StatusBadRequest, fmt.Errorf(`%s: body %s, expected {"value": <value>}`, what, err)
	}
	c, err := d.change(a, fields[0].value)
	if err != nil {
		return StatusBadRequest, err
	}
	o.Changes = []Change{c}
	return 0, nil
}

// decidePatch handles PATCH deviceModels/<urn>/attributes.
func (d *Device) decidePatch(method string, body []byte, o *Outcome) (int, error) {
	what := fmt.Sprintf("attributes of device model %q", d.model.URN)
	if method != "PATCH" {
		return StatusMethodNotAllowed, methodError(what, method, "PATCH (or POST with x-http-method-override: PATCH)")
	}
	fields, err := decodeObject(body)
	if err == nil && len(fields) == 0 {
		err = errors.New("has no attribute")
	}
	if err != nil {
		return StatusBadRequest, fmt.Errorf(`%s: body %s, expected {"<attribute>": <value>, ...}`, what, err)
	}
	var errs []error
	seen := make(map[string]string, len(fields)) // real name -> key used
	changes := make([]Change, 0, len(fields))
	for _, f := range fields {
		a, err := d.attribute(f.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if first, dup := seen[a.Name]; dup {
			errs = append(errs, fmt.Errorf("attribute %q: set twice in one request (as %q and %q)", a.Name, first, f.name))
			continue
		}
		seen[a.Name] = f.name
		if err := d.writable(a); err != nil {
			errs = append(errs, err)
			continue
		}
		c, err := d.change(a, f.value)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changes = append(changes, c)
	}
	if len(errs) > 0 {
		return StatusBadRequest, errors.Join(errs...)
	}
	o.Changes = changes
	return 0, nil
}

// decideAction handles POST deviceModels/<urn>/actions/<name>.
func (d *Device) decideAction(nameOrAlias, method string, body []byte, o *Outcome) (int, error) {
	act, ok := d.model.Action(nameOrAlias)
	if !ok {
		return StatusNotFound, fmt.Errorf("action %q: not in device model %q", nameOrAlias, d.model.URN)
	}
	what := fmt.Sprintf("action %q", act.Name)
	if method != "POST" {
		return StatusMethodNotAllowed, methodError(what, method, "POST")
	}
	raw := map[string]any{}
	if len(bytes.TrimSpace(body)) > 0 {
		fields, err := decodeObject(body)
		if err != nil {
			return StatusBadRequest, fmt.Errorf(`%s: body %s, expected {"value": <value>}, {"<argument>": <value>, ...} or an empty body`, what, err)
		}
		for _, f := range fields {
			raw[f.name] = f.value
		}
	}
	args, err := act.ConvertArgs(raw)
	if err != nil {
		return StatusBadRequest, err
	}
	if args == nil {
		args = map[string]model.Value{}
	}
	o.Invocation = &Invocation{Action: act.Name, Args: args}
	return 0, nil
}

// writable refuses a cloud set of a read-only attribute.
func (d *Device) writable(a *model.Attribute) error {
	if a.Writable {
		return nil
	}
	return fmt.Errorf("attribute %q: read-only in device model %q, the cloud may set only writable attributes", a.Name, d.model.URN)
}

// change checks a requested value and pairs it with the last-known one.
func (d *Device) change(a *model.Attribute, raw any) (Change, error) {
	v, err := a.Check(raw)
	if err != nil {
		return Change{}, err
	}
	return Change{Name: a.Name, Old: d.values[a.Name], New: v}, nil
}

// keysOf completes "body ..." with the keys of an object of the wrong shape.
func keysOf(fields []field) string {
	if len(fields) == 0 {
		return "has no key"
	}
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = strconv.Quote(f.name)
	}
	return "has the keys " + strings.Join(keys, ", ")
}

// field is one key of a JSON object body, in body order.
type field struct {
	name  string
	value any
}

// decodeObject decodes a JSON object keeping its keys in order; numbers stay
// json.Number so that large integers keep their precision. A duplicate key
// is an error. The error completes the sentence "body ...".
func decodeObject(body []byte) ([]field, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("is empty")
	}
	// Unmarshal checks the whole body first and gives the most telling
	// syntax errors; the token pass below then cannot fail on syntax.
	var whole json.RawMessage
	if err := json.Unmarshal(body, &whole); err != nil {
		return nil, fmt.Errorf("is not JSON (%v)", err)
	}
	dec := json.NewDecoder(bytes.NewReader(whole))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("is not a JSON object")
	}
	var fields []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("is not JSON (%v)", err)
		}
		key, _ := tok.(string) // inside an object, Token returns keys as strings
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("is not JSON (%v)", err)
		}
		if seen[key] {
			return nil, fmt.Errorf("has the key %q twice", key)
		}
		seen[key] = true
		fields = append(fields, field{name: key, value: v})
	}
	return fields, nil
}

// response returns the RESPONSE to req: source the request's destination (or
// the endpoint ID), destination the request's source, requestId the request's
// id, url the request's URL. req may be nil.
func (d *Device) response(req *message.Message, status int, body []byte, now time.Time) message.Message {
	var id string
	if d.newID != nil {
		id = d.newID()
	}
	m := message.Message{
		ClientID:    id,
		Source:      d.endpointID,
		Priority:    d.responseQoS.Priority,
		Reliability: d.responseQoS.Reliability,
		EventTime:   now,
		Type:        message.TypeResponse,
		Response:    &message.Response{StatusCode: status, Body: body},
	}
	if req != nil {
		if req.Destination != "" {
			m.Source = req.Destination
		}
		m.Destination = req.Source
		m.Response.RequestID = req.ID
		if req.Request != nil {
			m.Response.URL = req.Request.URL
		}
	}
	return m
}

// Complete finishes a non-final Outcome after the application ran its
// callbacks. With handlerErr nil it answers 200 with body "OK" and, for a
// set, commits the new values and returns the DATA echo; with handlerErr
// non-nil it answers 500 with handlerErr's text and commits nothing. A final
// Outcome gets its own Response back, handlerErr ignored.
func (d *Device) Complete(o Outcome, handlerErr error, now time.Time) Result {
	if o.Final() {
		return Result{Response: *o.Response}
	}
	if o.Request == nil || (len(o.Changes) == 0 && o.Invocation == nil) {
		return Result{Response: d.response(o.Request, StatusInternalServerError,
			[]byte("complete: the outcome has no request or nothing to run, expected one returned by HandleRequest"), now)}
	}
	if handlerErr != nil {
		return Result{Response: d.response(o.Request, StatusInternalServerError, []byte(handlerErr.Error()), now)}
	}
	r := Result{Response: d.response(o.Request, StatusOK, []byte(okBody), now)}
	if len(o.Changes) > 0 {
		fields := make([]message.Field, len(o.Changes))
		for i, c := range o.Changes {
			d.values[c.Name] = c.New
			fields[i] = message.Field{Name: c.Name, Value: c.New.Any()}
		}
		if m, err := d.attributesMessage(fields, now); err == nil {
			r.Data = &m
		}
	}
	return r
}
