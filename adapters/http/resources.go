package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// policyFields is the fields= selection of the device policy calls.
const policyFields = "id,pipelines,enabled,lastModified"

// Model fetches a device model (protocol.md §4): GET
// deviceModels/{urn}?expand=formats, parsed by model.Parse (Raw keeps the
// cloud's JSON for the model store). A 404 gives an error wrapping
// ports.ErrNotFound; a draft model is a permanent error unless
// Config.AllowDraftModels is set; so is a model that does not parse or has
// another URN.
func (c *Client) Model(ctx context.Context, urn string) (*model.DeviceModel, error) {
	op := fmt.Sprintf("fetch device model %q", urn)
	if urn == "" {
		return nil, &ports.CloudError{Op: "fetch device model", Permanent: true, Index: -1, Err: errors.New("the URN is empty; expected a device model URN")}
	}
	rep, err := c.do(ctx, request{op: op, method: http.MethodGet, path: apiRoot + "/deviceModels/" + url.PathEscape(urn),
		query: "expand=formats", scope: scopeDefault, timeout: c.timeout})
	if err != nil {
		return nil, err
	}
	if !rep.ok() {
		return nil, c.statusError(op, rep, "")
	}
	m, err := model.Parse(rep.body)
	if err != nil {
		return nil, answerError(op, rep, "the cloud's model is not usable: %w", err)
	}
	if m.URN != urn {
		return nil, answerError(op, rep, "the cloud answered with model %q; expected %q", m.URN, urn)
	}
	if m.Draft && !c.allowDrafts {
		return nil, answerError(op, rep, "the model is a draft; drafts are refused unless AllowDraftModels is set")
	}
	return m, nil
}

// DevicePolicy returns the raw JSON of the device policy (protocol.md §5)
// that applies to deviceID under the model modelURN: the first item of GET
// /iot/privateapi/v2/deviceModels/{urn}/devicePolicies?q={"devices.id":..}&fields=...
// It returns an error wrapping ports.ErrNotFound when no policy applies.
func (c *Client) DevicePolicy(ctx context.Context, modelURN, deviceID string) ([]byte, error) {
	op := fmt.Sprintf("fetch the device policy of %q for model %q", deviceID, modelURN)
	if modelURN == "" || deviceID == "" {
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: errors.New("the model URN or the device ID is empty")}
	}
	q, _ := json.Marshal(map[string]string{"devices.id": deviceID})
	query := url.Values{"q": {string(q)}, "fields": {policyFields}}
	rep, err := c.do(ctx, request{op: op, method: http.MethodGet, path: policiesPath(modelURN), query: query.Encode(),
		scope: scopeDefault, timeout: c.timeout})
	if err != nil {
		return nil, err
	}
	if !rep.ok() {
		return nil, c.statusError(op, rep, "")
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := decodeJSON(op, rep, &list, `a list {"items":[...]}`); err != nil {
		return nil, err
	}
	if len(list.Items) == 0 {
		return nil, &ports.CloudError{Op: op, Status: rep.status, Permanent: true, Index: -1,
			Err: fmt.Errorf("no policy is assigned (%w)", ports.ErrNotFound)}
	}
	if !isObject(list.Items[0]) {
		return nil, answerError(op, rep, "items[0] is not a JSON object; expected a device policy")
	}
	return bytes.Clone(list.Items[0]), nil
}

// DevicePolicyByID returns the raw JSON of one device policy (protocol.md
// §5): GET /iot/privateapi/v2/deviceModels/{urn}/devicePolicies/{id}?fields=...
// A 404 gives an error wrapping ports.ErrNotFound.
func (c *Client) DevicePolicyByID(ctx context.Context, modelURN, policyID string) ([]byte, error) {
	op := fmt.Sprintf("fetch device policy %q of model %q", policyID, modelURN)
	if modelURN == "" || policyID == "" {
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: errors.New("the model URN or the policy ID is empty")}
	}
	rep, err := c.do(ctx, request{op: op, method: http.MethodGet, path: policiesPath(modelURN) + "/" + url.PathEscape(policyID),
		query: url.Values{"fields": {policyFields}}.Encode(), scope: scopeDefault, timeout: c.timeout})
	if err != nil {
		return nil, err
	}
	if !rep.ok() {
		return nil, c.statusError(op, rep, "")
	}
	if !isObject(rep.body) {
		return nil, answerError(op, rep, "the answer is not a JSON object; expected a device policy")
	}
	return rep.body, nil
}

func policiesPath(modelURN string) string {
	return privateAPIRoot + "/deviceModels/" + url.PathEscape(modelURN) + "/devicePolicies"
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// StorageURL asks for a pre-authorized URL of a storage object (protocol.md
// §7, new style): POST provisioner/storage {"object","method"}, method PUT,
// GET or HEAD. It returns the storageUrl and the headers to send with it,
// without "(request-target)". A 405 or 412 means the cloud offers only
// classic storage, which this client does not support: a permanent error
// that says so.
func (c *Client) StorageURL(ctx context.Context, object, method string) (string, map[string]string, error) {
	op := fmt.Sprintf("get a storage URL for %q", object)
	invalid := func(format string, args ...any) (string, map[string]string, error) {
		return "", nil, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	if object == "" {
		return invalid("the object name is empty")
	}
	switch method {
	case http.MethodPut, http.MethodGet, http.MethodHead:
	default:
		return invalid("method %q is not supported; expected PUT, GET or HEAD", method)
	}
	body, _ := json.Marshal(map[string]string{"object": object, "method": method})
	rep, err := c.do(ctx, request{op: op, method: http.MethodPost, path: apiRoot + "/provisioner/storage", body: body,
		scope: scopeDefault, timeout: c.timeout})
	if err != nil {
		return "", nil, err
	}
	if rep.status == http.StatusMethodNotAllowed || rep.status == http.StatusPreconditionFailed {
		ce := c.statusError(op, rep, "")
		ce.Err = fmt.Errorf("the cloud offers only classic storage (answered %d); expected pre-authorized storage URLs (server 19.1.1 and later)", rep.status)
		return "", nil, ce
	}
	if !rep.ok() {
		return "", nil, c.statusError(op, rep, "")
	}
	var a struct {
		StorageURL string         `json:"storageUrl"`
		Headers    map[string]any `json:"headers"`
	}
	if err := decodeJSON(op, rep, &a, `a storage grant {"storageUrl","headers"}`); err != nil {
		return "", nil, err
	}
	if u, err := url.Parse(a.StorageURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", nil, answerError(op, rep, "storageUrl %q is not an absolute http(s) URL", a.StorageURL)
	}
	headers := make(map[string]string, len(a.Headers))
	for k, v := range a.Headers {
		if strings.EqualFold(k, "(request-target)") {
			continue
		}
		switch v := v.(type) {
		case string:
			headers[k] = v
		case float64:
			headers[k] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return "", nil, answerError(op, rep, "header %q has a %T value; expected a string", k, v)
		}
	}
	return a.StorageURL, headers, nil
}
