package cloud

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// policyChangedURL is the device resource the policy push goes to (§5, §8).
const policyChangedURL = "deviceModels/" + model.CapDevicePolicy + "/policyChanged"

// policyChangedMethod: Oracle's JS library answers 405 to anything but POST
// on policyChanged; Java does not check the method.
const policyChangedMethod = http.MethodPost

// Policy push operations.
const (
	opChanged    = "changed"
	opAssigned   = "assigned"
	opUnassigned = "unassigned"
)

// policyFunctions are the pipeline function ids of protocol.md §5.
var policyFunctions = []string{
	"actionCondition", "alertCondition", "batchByCost", "batchBySize", "batchByTime", "computedMetric",
	"detectDuplicates", "eliminateDuplicates", "filterCondition", "max", "mean", "min", "sampleQuality",
	"standardDeviation",
}

// policyBody is the enterprise POST devicePolicies body: a §5 policy plus its model.
type policyBody struct {
	ID             string          `json:"id"`
	Description    string          `json:"description"`
	Enabled        *bool           `json:"enabled"`
	LastModified   int64           `json:"lastModified"` // ignored: set by the server
	Pipelines      json.RawMessage `json:"pipelines"`
	DeviceModelURN string          `json:"deviceModelUrn"`
	// Read-only fields that a GET answer carries; accepted so that a GET
	// answer can be posted back, and ignored.
	AllDevices bool     `json:"allDevices"`
	Devices    []string `json:"devices"`
}

// devicePolicy is the policy as devices read it (§5).
type devicePolicy struct {
	ID           string          `json:"id"`
	Description  string          `json:"description,omitempty"`
	Enabled      bool            `json:"enabled"`
	LastModified int64           `json:"lastModified"`
	Pipelines    json.RawMessage `json:"pipelines"`
}

func toDevicePolicy(p *store.Policy) devicePolicy {
	return devicePolicy{ID: p.ID, Description: p.Description, Enabled: p.Enabled, LastModified: p.LastModified, Pipelines: p.Pipelines}
}

type collection[T any] struct {
	Items   []T  `json:"items"`
	Count   int  `json:"count"`
	HasMore bool `json:"hasMore"`
}

// checkPipelines validates the structure of a policy's pipelines against dm.
func checkPipelines(raw json.RawMessage, dm *model.DeviceModel) (json.RawMessage, error) {
	var pipes []struct {
		AttributeName *string `json:"attributeName"`
		Pipeline      []struct {
			ID         string         `json:"id"`
			Parameters map[string]any `json:"parameters"`
		} `json:"pipeline"`
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errors.New("pipelines is missing, expected an array of {attributeName, pipeline}")
	}
	if err := json.Unmarshal(raw, &pipes); err != nil {
		return nil, fmt.Errorf("pipelines: %v", err)
	}
	var errs []error
	for i, p := range pipes {
		switch {
		case p.AttributeName == nil || *p.AttributeName == "":
			errs = append(errs, fmt.Errorf("pipelines[%d].attributeName is missing, expected an attribute of %s or \"*\"", i, dm.URN))
		case *p.AttributeName != "*":
			if _, ok := dm.Attribute(*p.AttributeName); !ok {
				errs = append(errs, fmt.Errorf("pipelines[%d].attributeName: device model %s has no attribute %q", i, dm.URN, *p.AttributeName))
			}
		}
		if len(p.Pipeline) == 0 {
			errs = append(errs, fmt.Errorf("pipelines[%d].pipeline is empty, expected at least one function", i))
		}
		for j, f := range p.Pipeline {
			if !slices.Contains(policyFunctions, f.ID) {
				errs = append(errs, fmt.Errorf("pipelines[%d].pipeline[%d].id is %q, expected one of %s", i, j, f.ID, strings.Join(policyFunctions, ", ")))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	compact, _ := json.Marshal(json.RawMessage(raw)) // compacts; raw is valid JSON here
	return compact, nil
}

// loadModel returns the parsed stored model urn, or a 404/400 httpError.
func loadModel(tx store.Tx, urn string, status int) (*model.DeviceModel, error) {
	raw, err := tx.Model(urn)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(status, "device model %q is not registered", urn)
	}
	if err != nil {
		return nil, err
	}
	dm, err := model.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("stored device model %s: %w", urn, err)
	}
	return dm, nil
}

// affected returns the activated devices p applies to.
func affected(tx store.Tx, p *store.Policy) ([]*store.Device, error) {
	devs, err := tx.Devices()
	if err != nil {
		return nil, err
	}
	var out []*store.Device
	for _, d := range devs {
		if d.State == api.StateActivated && d.EndpointID != "" && p.Applies(d.EndpointID, d.Models) {
			out = append(out, d)
		}
	}
	return out, nil
}

// routeOf is the endpoint that fetches d's requests: its gateway for an ICD.
func routeOf(d *store.Device) string {
	if d.Type == api.DeviceTypeIndirect && d.Gateway != "" {
		return d.Gateway
	}
	return d.EndpointID
}

// pushPolicy queues one policyChanged request per route of devs and returns
// the routes to wake after commit.
func (s *Server) pushPolicy(tx store.Tx, p *store.Policy, op string, devs []*store.Device) ([]string, error) {
	var routes []string
	for _, d := range devs {
		if r := routeOf(d); !slices.Contains(routes, r) {
			routes = append(routes, r)
		}
	}
	sort.Strings(routes)
	body, _ := json.Marshal([]map[string]any{{"deviceModelUrn": p.DeviceModelURN, "id": p.ID, "lastModified": p.LastModified, "op": op}})
	for _, route := range routes {
		if _, err := s.enqueue(tx, route, route, policyChangedMethod, policyChangedURL, nil, body); err != nil {
			return nil, err
		}
	}
	return routes, nil
}

// enqueue queues a REQUEST for destination, fetched by route, and returns it.
func (s *Server) enqueue(tx store.Tx, destination, route, method, url string, headers map[string][]string, body []byte) (*store.Request, error) {
	now := s.now()
	id := newUUID()
	m := message.Message{
		ID:          id,
		ClientID:    id,
		Source:      requestSource,
		Destination: destination,
		Priority:    message.PriorityHigh,
		Reliability: message.GuaranteedDelivery,
		EventTime:   now,
		Type:        message.TypeRequest,
		Request:     &message.Request{Method: method, URL: url, Headers: headers, Params: map[string]string{}, Body: body},
	}
	if m.Request.Headers == nil {
		m.Request.Headers = map[string][]string{}
	}
	wire, err := message.AppendJSON(nil, &m)
	if err != nil {
		return nil, fmt.Errorf("encode request %s: %w", url, err)
	}
	req := &store.Request{
		ID: id, Destination: destination, RouteTo: route, Method: m.Request.EffectiveMethod(), URL: url,
		Created: now.UnixMilli(), Updated: now.UnixMilli(), Expires: now.Add(s.cfg.RequestTTL).UnixMilli(),
		Wire: wire,
	}
	if err := tx.EnqueueRequest(req); err != nil {
		return nil, err
	}
	s.log.Debug("request queued", "request_id", id, "destination", destination, "route", route, "url", url)
	return req, nil
}

func (s *Server) wakeAll(routes []string) {
	for _, r := range routes {
		s.wake.notify(r)
	}
}

// handlePolicyPost creates (201) or replaces (200, pushing "changed") a policy.
func (s *Server) handlePolicyPost(w http.ResponseWriter, r *http.Request) error {
	var body policyBody
	if err := decodeBody(w, r, "device policy", &body, true); err != nil {
		return err
	}
	if body.DeviceModelURN == "" {
		return errorf(http.StatusBadRequest, "device policy: deviceModelUrn is missing, expected the URN of a registered device model")
	}
	var out *store.Policy
	var routes []string
	created := false
	err := s.store.Update(func(tx store.Tx) error {
		dm, err := loadModel(tx, body.DeviceModelURN, http.StatusBadRequest)
		if err != nil {
			return err
		}
		pipes, err := checkPipelines(body.Pipelines, dm)
		if err != nil {
			return errorf(http.StatusBadRequest, "device policy: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		p := &store.Policy{ID: body.ID, Description: body.Description, Enabled: body.Enabled == nil || *body.Enabled,
			Pipelines: pipes, DeviceModelURN: body.DeviceModelURN, LastModified: s.now().UnixMilli()}
		var prev *store.Policy
		if p.ID == "" {
			p.ID = newUUID()
		} else if prev, err = tx.Policy(p.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if prev == nil {
			created = true
			out = p
			return tx.PutPolicy(p)
		}
		if prev.DeviceModelURN != p.DeviceModelURN {
			return errorf(http.StatusBadRequest, "device policy %q: deviceModelUrn is %q, expected %q (a policy cannot move to another model)", p.ID, p.DeviceModelURN, prev.DeviceModelURN)
		}
		p.AllDevices, p.Devices = prev.AllDevices, prev.Devices
		if p.LastModified <= prev.LastModified {
			p.LastModified = prev.LastModified + 1
		}
		if err := tx.PutPolicy(p); err != nil {
			return err
		}
		devs, err := affected(tx, p)
		if err != nil {
			return err
		}
		out = p
		routes, err = s.pushPolicy(tx, p, opChanged, devs)
		return err
	})
	if err != nil {
		return err
	}
	s.wakeAll(routes)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, out)
	return nil
}

func (s *Server) handlePolicyList(w http.ResponseWriter, r *http.Request) error {
	urn := r.URL.Query().Get("deviceModel")
	list := api.List[*store.Policy]{Items: []*store.Policy{}}
	err := s.store.View(func(tx store.Tx) error {
		ps, err := tx.Policies()
		for _, p := range ps {
			if urn == "" || p.DeviceModelURN == urn {
				list.Items = append(list.Items, p)
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func policyNotFound(err error, id string) error {
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "device policy %q does not exist", id)
	}
	return err
}

func (s *Server) handlePolicyGet(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var p *store.Policy
	err := s.store.View(func(tx store.Tx) error {
		var err error
		p, err = tx.Policy(id)
		return err
	})
	if err != nil {
		return policyNotFound(err, id)
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// handlePolicyDelete deletes a policy (204), pushing "unassigned" to its devices.
func (s *Server) handlePolicyDelete(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var routes []string
	err := s.store.Update(func(tx store.Tx) error {
		p, err := tx.Policy(id)
		if err != nil {
			return err
		}
		devs, err := affected(tx, p)
		if err != nil {
			return err
		}
		if err := tx.DeletePolicy(id); err != nil {
			return err
		}
		routes, err = s.pushPolicy(tx, p, opUnassigned, devs)
		return err
	})
	if err != nil {
		return policyNotFound(err, id)
	}
	s.wakeAll(routes)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handlePolicyAssign assigns a policy to every device of its model (no
// devices given) or to some devices, pushing "assigned" to the newly covered ones.
func (s *Server) handlePolicyAssign(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var body api.PolicyAssignment
	if err := decodeBody(w, r, "policy assignment", &body, true); err != nil {
		return err
	}
	var out *store.Policy
	var routes []string
	err := s.store.Update(func(tx store.Tx) error {
		p, err := tx.Policy(id)
		if err != nil {
			return policyNotFound(err, id)
		}
		if body.DeviceModel != "" && body.DeviceModel != p.DeviceModelURN {
			return errorf(http.StatusBadRequest, "policy assignment: deviceModel is %q, expected the policy's model %q", body.DeviceModel, p.DeviceModelURN)
		}
		before, err := affected(tx, p)
		if err != nil {
			return err
		}
		if len(body.Devices) == 0 {
			p.AllDevices = true
		}
		for _, ref := range body.Devices {
			d, err := tx.Device(ref)
			if errors.Is(err, store.ErrNotFound) {
				return errorf(http.StatusBadRequest, "policy assignment: device %q is not registered", ref)
			}
			if err != nil {
				return err
			}
			if d.EndpointID == "" {
				return errorf(http.StatusBadRequest, "policy assignment: device %q is not activated, expected an activated device (policies are assigned to endpoints)", ref)
			}
			if !slices.Contains(d.Models, p.DeviceModelURN) {
				return errorf(http.StatusBadRequest, "policy assignment: device %q does not implement device model %q", ref, p.DeviceModelURN)
			}
			if !slices.Contains(p.Devices, d.EndpointID) {
				p.Devices = append(p.Devices, d.EndpointID)
			}
		}
		if err := tx.PutPolicy(p); err != nil {
			return err
		}
		after, err := affected(tx, p)
		if err != nil {
			return err
		}
		var added []*store.Device
		for _, d := range after {
			if !slices.ContainsFunc(before, func(b *store.Device) bool { return b.ID == d.ID }) {
				added = append(added, d)
			}
		}
		out = p
		routes, err = s.pushPolicy(tx, p, opAssigned, added)
		return err
	})
	if err != nil {
		return err
	}
	s.wakeAll(routes)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queryParam decodes the JSON q parameter of the private policy API and
// returns its key, or def when q is absent.
func queryParam(r *http.Request, key, def string) (string, error) {
	q := r.URL.Query().Get("q")
	if q == "" {
		return def, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(q), &m); err != nil {
		return "", errorf(http.StatusBadRequest, "query parameter q is not a JSON object: %v", err)
	}
	v, ok := m[key].(string)
	if !ok {
		return "", errorf(http.StatusBadRequest, "query parameter q is %s, expected {%q:\"<endpoint id>\"}", q, key)
	}
	return v, nil
}

// handleDevicePolicyFind is the device GET .../deviceModels/{urn}/devicePolicies?q={"devices.id":..}:
// the policies of urn that apply to the device (itself or one of its ICDs),
// device-specific assignments first.
func (s *Server) handleDevicePolicyFind(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	urn := r.PathValue("urn")
	target, err := queryParam(r, "devices.id", d.EndpointID)
	if err != nil {
		return err
	}
	out := collection[devicePolicy]{Items: []devicePolicy{}}
	err = s.store.View(func(tx store.Tx) error {
		td, err := tx.Device(target)
		if errors.Is(err, store.ErrNotFound) || (err == nil && td.EndpointID != d.EndpointID && td.Gateway != d.EndpointID) {
			return errorf(http.StatusForbidden, "device policies: device %q is neither the caller %q nor one of its indirectly connected devices", target, d.EndpointID)
		}
		if err != nil {
			return err
		}
		ps, err := tx.Policies()
		if err != nil {
			return err
		}
		var matched []*store.Policy
		for _, p := range ps {
			if p.DeviceModelURN == urn && p.Applies(td.EndpointID, td.Models) {
				matched = append(matched, p)
			}
		}
		sort.SliceStable(matched, func(i, j int) bool {
			if matched[i].AllDevices != matched[j].AllDevices {
				return !matched[i].AllDevices
			}
			return matched[i].LastModified > matched[j].LastModified
		})
		for _, p := range matched {
			out.Items = append(out.Items, toDevicePolicy(p))
		}
		return nil
	})
	if err != nil {
		return err
	}
	out.Count = len(out.Items)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleDevicePolicyGet is the device GET .../deviceModels/{urn}/devicePolicies/{id}.
func (s *Server) handleDevicePolicyGet(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	urn, id := r.PathValue("urn"), r.PathValue("id")
	var p *store.Policy
	err := s.store.View(func(tx store.Tx) error {
		var err error
		p, err = tx.Policy(id)
		return err
	})
	if err != nil {
		return policyNotFound(err, id)
	}
	if p.DeviceModelURN != urn {
		return errorf(http.StatusNotFound, "device policy %q does not exist for device model %q", id, urn)
	}
	writeJSON(w, http.StatusOK, toDevicePolicy(p))
	return nil
}

type deviceRef struct {
	ID string `json:"id"`
}

// handleDevicePolicyDevices is the gateway's GET .../devicePolicies/{id}/devices?q={"directlyConnectedOwner":..}:
// its ICDs the policy applies to.
func (s *Server) handleDevicePolicyDevices(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	urn, id := r.PathValue("urn"), r.PathValue("id")
	owner, err := queryParam(r, "directlyConnectedOwner", d.EndpointID)
	if err != nil {
		return err
	}
	if owner != d.EndpointID {
		return errorf(http.StatusForbidden, "device policies: directlyConnectedOwner is %q, expected the caller %q", owner, d.EndpointID)
	}
	out := collection[deviceRef]{Items: []deviceRef{}}
	err = s.store.View(func(tx store.Tx) error {
		p, err := tx.Policy(id)
		if err != nil {
			return policyNotFound(err, id)
		}
		if p.DeviceModelURN != urn {
			return errorf(http.StatusNotFound, "device policy %q does not exist for device model %q", id, urn)
		}
		devs, err := affected(tx, p)
		for _, dev := range devs {
			if dev.Gateway == owner {
				out.Items = append(out.Items, deviceRef{ID: dev.EndpointID})
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	out.Count = len(out.Items)
	writeJSON(w, http.StatusOK, out)
	return nil
}
