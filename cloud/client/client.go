package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

// DefaultTimeout bounds each call of a Client built without WithHTTPClient.
const DefaultTimeout = 60 * time.Second

// maxBody bounds what the client reads from one answer.
const maxBody = 64 << 20

// Client calls one iotcloud's enterprise API. It is safe for concurrent use.
type Client struct {
	base         string // scheme://host[:port][/prefix], no trailing slash
	token        string
	hc           *http.Client
	pollInterval time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithCAPool makes the client trust only the certificates in pool (the
// cloud's own CA, DIR/ca.pem) for HTTPS. It replaces the HTTP client, so it
// must not be combined with WithHTTPClient.
func WithCAPool(pool *x509.CertPool) Option {
	return func(c *Client) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		c.hc = &http.Client{Transport: tr, Timeout: DefaultTimeout}
	}
}

// WithHTTPClient makes the client send its calls through hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithPollInterval sets how often WaitRequest asks for a request's status
// (default 250 ms).
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) { c.pollInterval = d }
}

// New returns a client for the cloud at baseURL (such as
// https://127.0.0.1:8443) that authenticates with the admin token. Without
// WithCAPool or WithHTTPClient it trusts the system's root certificates.
// It does no I/O.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("cloud url %q: expected https://HOST[:PORT] (or http:// for a cloud started with --insecure-http)", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("cloud url %q: expected no user, query or fragment", baseURL)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("admin token is empty: expected the content of the cloud's admin.token file")
	}
	c := &Client{
		base:         strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		token:        token,
		hc:           &http.Client{Timeout: DefaultTimeout},
		pollInterval: 250 * time.Millisecond,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL returns the cloud URL the client talks to.
func (c *Client) BaseURL() string { return c.base }

// CloseIdleConnections closes the connections the client keeps open between
// calls. Calls made afterwards open new ones.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// APIError is a non-2xx answer of the cloud.
type APIError struct {
	Status  int       // HTTP status code
	Message string    // the server's message (from its api.Error body), or the body text
	Body    api.Error // the decoded error body; zero when the body was not JSON
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "no message"
	}
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}

// IsNotFound reports whether err is an *APIError with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// esc escapes one path segment (a URN keeps its colons).
func esc(s string) string { return url.PathEscape(s) }

// do sends one call. body is marshalled to JSON unless it is a []byte, sent
// as is. When out is a *[]byte it receives the raw body; otherwise, when out
// is not nil, the body is decoded into it.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case []byte:
			b = v
		default:
			var err error
			if b, err = json.Marshal(v); err != nil {
				return fmt.Errorf("encode request body: %w", err)
			}
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + api.Root + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, u, err)
	}
	if len(data) > maxBody {
		return fmt.Errorf("answer of %s %s: longer than %d bytes", method, u, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp.StatusCode, data)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer of %s %s: %w", method, u, err)
		}
		return nil
	}
}

func decodeError(status int, data []byte) error {
	e := &APIError{Status: status}
	var body api.Error
	if json.Unmarshal(data, &body) == nil && body.Message != "" {
		e.Body = body
		e.Message = body.Message
		var where []string
		if body.Index != nil {
			where = append(where, "message "+strconv.Itoa(*body.Index))
		}
		if body.Field != "" {
			where = append(where, "field "+strconv.Quote(body.Field))
		}
		if len(where) > 0 {
			e.Message += " (" + strings.Join(where, ", ") + ")"
		}
		return e
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	e.Message = text
	return e
}

// AddModel uploads a device model (the JSON of protocol.md §4) and returns
// the stored model as the server answers it.
func (c *Client) AddModel(ctx context.Context, model []byte) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/deviceModels", nil, model, &out); err != nil {
		return nil, fmt.Errorf("add device model: %w", err)
	}
	return out, nil
}

// Models lists the device models known to the cloud.
func (c *Client) Models(ctx context.Context) (api.List[json.RawMessage], error) {
	var out api.List[json.RawMessage]
	if err := c.do(ctx, http.MethodGet, "/deviceModels", nil, nil, &out); err != nil {
		return out, fmt.Errorf("list device models: %w", err)
	}
	return out, nil
}

// Model returns one device model.
func (c *Client) Model(ctx context.Context, urn string) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/deviceModels/"+esc(urn), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get device model %s: %w", urn, err)
	}
	return out, nil
}

// RegisterDevice registers a device. The answer carries the shared secret
// (generated by the cloud when r.SharedSecret is empty): treat it as a secret.
func (c *Client) RegisterDevice(ctx context.Context, r api.RegisterDevice) (api.Device, error) {
	var out api.Device
	if err := c.do(ctx, http.MethodPost, "/devices", nil, r, &out); err != nil {
		return out, fmt.Errorf("register device: %w", err)
	}
	return out, nil
}

// Devices lists the registered devices.
func (c *Client) Devices(ctx context.Context) (api.List[api.Device], error) {
	var out api.List[api.Device]
	if err := c.do(ctx, http.MethodGet, "/devices", nil, nil, &out); err != nil {
		return out, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

// Device returns one device, by activation id or endpoint id.
func (c *Client) Device(ctx context.Context, id string) (api.Device, error) {
	var out api.Device
	if err := c.do(ctx, http.MethodGet, "/devices/"+esc(id), nil, nil, &out); err != nil {
		return out, fmt.Errorf("get device %s: %w", id, err)
	}
	return out, nil
}

// ProvisioningFile returns the provisioning file of a registered device,
// encrypted with r.Passphrase, in r.Format ("v2" by default, or "oracle").
func (c *Client) ProvisioningFile(ctx context.Context, id string, r api.ProvisioningFileRequest) ([]byte, error) {
	var out []byte
	if err := c.do(ctx, http.MethodPost, "/devices/"+esc(id)+"/provisioningFile", nil, r, &out); err != nil {
		return nil, fmt.Errorf("get provisioning file of device %s: %w", id, err)
	}
	return out, nil
}

// MessageQuery selects stored messages. Zero fields select everything.
type MessageQuery struct {
	Source string // the endpoint id that sent them
	Type   string // DATA, ALERT, RESPONSE, ...
	Since  int64  // epoch ms; only messages received at or after it
	// After is a cursor: only messages stored after the one with this Seq
	// (an api.Message.Seq, or the api.MessageList.Next of the previous
	// page). 0 is no cursor unless Oldest is set.
	After uint64
	// Oldest sends the cursor even when After is 0, which selects the oldest
	// matching messages from the first one stored. Without it, a query with
	// neither Since nor After returns the newest messages.
	Oldest bool
	Limit  int // at most this many per page (the server caps it; 0 = its default)
}

// Messages returns one page of stored messages, in the order the cloud
// stored them: the oldest matching ones when q has Since, After or Oldest,
// else the newest. Send After = the answer's Next for the following page.
func (c *Client) Messages(ctx context.Context, q MessageQuery) (api.MessageList, error) {
	v := url.Values{}
	if q.Source != "" {
		v.Set("source", q.Source)
	}
	if q.Type != "" {
		v.Set("type", q.Type)
	}
	if q.Since != 0 {
		v.Set("since", strconv.FormatInt(q.Since, 10))
	}
	if q.After != 0 || q.Oldest {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out api.MessageList
	if err := c.do(ctx, http.MethodGet, "/messages", v, nil, &out); err != nil {
		return out, fmt.Errorf("list messages: %w", err)
	}
	return out, nil
}

// AllMessages iterates over the messages q selects, oldest first, fetching
// one page of q.Limit (0 = the server's default) at a time with the cursor,
// from q.After (the first stored message when 0) and q.Since. It ends after
// the last page that has no more, so it sees each message stored until then
// exactly once. A failed call is yielded as the final error (with a zero
// api.Message); breaking out of the loop stops fetching.
func (c *Client) AllMessages(ctx context.Context, q MessageQuery) iter.Seq2[api.Message, error] {
	return func(yield func(api.Message, error) bool) {
		q.Oldest = true
		for {
			list, err := c.Messages(ctx, q)
			if err != nil {
				yield(api.Message{}, err)
				return
			}
			for _, m := range list.Items {
				if !yield(m, nil) {
					return
				}
			}
			if !list.HasMore {
				return
			}
			if list.Next <= q.After {
				yield(api.Message{}, fmt.Errorf("list messages after %d: the server answered hasMore with next %d, expected a later cursor", q.After, list.Next))
				return
			}
			q.After = list.Next
		}
	}
}

func attributesPath(endpointID, urn string) string {
	return "/devices/" + esc(endpointID) + "/deviceModels/" + esc(urn) + "/attributes"
}

// Attributes returns the last known attribute values of a device for a model.
func (c *Client) Attributes(ctx context.Context, endpointID, urn string) (map[string]any, error) {
	var out map[string]any
	if err := c.do(ctx, http.MethodGet, attributesPath(endpointID, urn), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get attributes of device %s model %s: %w", endpointID, urn, err)
	}
	return out, nil
}

// SetAttribute asks the device to set one attribute and returns the id of
// the request the cloud queued for it (see Request and WaitRequest).
func (c *Client) SetAttribute(ctx context.Context, endpointID, urn, name string, value any) (string, error) {
	var out api.Accepted
	if err := c.do(ctx, http.MethodPut, attributesPath(endpointID, urn)+"/"+esc(name), nil, api.SetAttribute{Value: value}, &out); err != nil {
		return "", fmt.Errorf("set attribute %s of device %s: %w", name, endpointID, err)
	}
	return out.RequestID, nil
}

// CallAction asks the device to run an action and returns the id of the
// queued request. args is the JSON body: nil for no argument,
// map[string]any{"value": v} for a single-argument action, or an object of
// named arguments.
func (c *Client) CallAction(ctx context.Context, endpointID, urn, action string, args any) (string, error) {
	if args == nil {
		args = struct{}{}
	}
	var out api.Accepted
	p := "/devices/" + esc(endpointID) + "/deviceModels/" + esc(urn) + "/actions/" + esc(action)
	if err := c.do(ctx, http.MethodPost, p, nil, args, &out); err != nil {
		return "", fmt.Errorf("call action %s of device %s: %w", action, endpointID, err)
	}
	return out.RequestID, nil
}

// Request returns the state of a request sent to a device.
func (c *Client) Request(ctx context.Context, id string) (api.Request, error) {
	var out api.Request
	if err := c.do(ctx, http.MethodGet, "/requests/"+esc(id), nil, nil, &out); err != nil {
		return out, fmt.Errorf("get request %s: %w", id, err)
	}
	return out, nil
}

// Final reports whether a request status will not change any more.
func Final(status string) bool {
	switch status {
	case api.RequestCompleted, api.RequestFailed, api.RequestExpired:
		return true
	}
	return false
}

// WaitRequest polls a request until its status is final (COMPLETED, FAILED
// or EXPIRED) and returns it. It blocks until then, until ctx ends (it then
// returns the last state seen and ctx's error) or until a call fails.
func (c *Client) WaitRequest(ctx context.Context, id string) (api.Request, error) {
	t := time.NewTicker(c.pollInterval)
	defer t.Stop()
	var last api.Request
	for {
		r, err := c.Request(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return last, err
		}
		last = r
		if Final(r.Status) {
			return r, nil
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	status := last.Status
	if status == "" {
		status = "unknown"
	}
	return last, fmt.Errorf("wait for request %s (last status %s): %w", id, status, ctx.Err())
}

// AddPolicy creates a device policy for a device model. policy is the policy
// JSON of protocol.md §5 (an object); modelURN is set as its "deviceModelUrn"
// (it may be empty when policy already carries one). It returns the stored
// policy, with its id, as the server answers it.
func (c *Client) AddPolicy(ctx context.Context, policy []byte, modelURN string) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(policy, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("add device policy: the policy is not a JSON object: %v", errOr(err, "got null"))
	}
	if modelURN != "" {
		u, _ := json.Marshal(modelURN)
		obj["deviceModelUrn"] = u
	}
	var out json.RawMessage
	if err := c.do(ctx, http.MethodPost, "/devicePolicies", nil, obj, &out); err != nil {
		return nil, fmt.Errorf("add device policy: %w", err)
	}
	return out, nil
}

func errOr(err error, s string) string {
	if err != nil {
		return err.Error()
	}
	return s
}

// Policies lists device policies, only those of modelURN when it is not empty.
func (c *Client) Policies(ctx context.Context, modelURN string) (api.List[json.RawMessage], error) {
	v := url.Values{}
	if modelURN != "" {
		v.Set("deviceModel", modelURN)
	}
	var out api.List[json.RawMessage]
	if err := c.do(ctx, http.MethodGet, "/devicePolicies", v, nil, &out); err != nil {
		return out, fmt.Errorf("list device policies: %w", err)
	}
	return out, nil
}

// Policy returns one device policy.
func (c *Client) Policy(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/devicePolicies/"+esc(id), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get device policy %s: %w", id, err)
	}
	return out, nil
}

// AssignPolicy assigns a policy to a device model (every device of it) or to
// some of its devices; the cloud pushes policyChanged to the devices.
func (c *Client) AssignPolicy(ctx context.Context, id string, a api.PolicyAssignment) error {
	if err := c.do(ctx, http.MethodPost, "/devicePolicies/"+esc(id)+"/assignments", nil, a, nil); err != nil {
		return fmt.Errorf("assign device policy %s: %w", id, err)
	}
	return nil
}

// DeletePolicy deletes a policy; the cloud pushes the change to its devices.
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	if err := c.do(ctx, http.MethodDelete, "/devicePolicies/"+esc(id), nil, nil, nil); err != nil {
		return fmt.Errorf("delete device policy %s: %w", id, err)
	}
	return nil
}
