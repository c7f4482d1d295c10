package cloud

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
)

// MinPassphraseLen is the shortest passphrase accepted for a provisioning file.
const MinPassphraseLen = 8

// maxSharedSecret bounds a registered shared secret (it is a TLV value).
const maxSharedSecret = 1024

// handleModelPost registers a device model: 201 when new, 200 when the same
// model is posted again or a draft is replaced, 409 when different content
// exists under the URN (models are immutable: devices cache them by URN).
func (s *Server) handleModelPost(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	dm, err := model.Parse(data)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return errorf(http.StatusBadRequest, "device model: %v", err)
	}
	status := http.StatusCreated
	err = s.store.Update(func(tx store.Tx) error {
		old, err := tx.Model(dm.URN)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		case sameJSON(old, data):
			status = http.StatusOK
			return nil
		default:
			prev, perr := model.Parse(old)
			if perr != nil || !prev.Draft {
				return errorf(http.StatusConflict, "device model %q already exists with different content; models are immutable, expected a new URN for a new version", dm.URN)
			}
			status = http.StatusOK
		}
		return tx.PutModel(dm.URN, compact.Bytes())
	})
	if err != nil {
		return err
	}
	if status == http.StatusCreated {
		s.log.Info("device model registered", "urn", dm.URN)
	}
	writeRawJSON(w, status, compact.Bytes())
	return nil
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

func writeRawJSON(w http.ResponseWriter, status int, data []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}

func (s *Server) handleModelList(w http.ResponseWriter, r *http.Request) error {
	list := api.List[json.RawMessage]{Items: []json.RawMessage{}}
	err := s.store.View(func(tx store.Tx) error {
		ms, err := tx.Models()
		for _, m := range ms {
			list.Items = append(list.Items, m)
		}
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// handleModelGet serves GET deviceModels/{urn} to admins and devices (§4);
// ?expand=formats is accepted (formats are always included).
func (s *Server) handleModelGet(w http.ResponseWriter, r *http.Request) error {
	if !s.isAdmin(r) {
		if _, err := s.authDevice(r, ""); err != nil {
			return err
		}
	}
	urn := r.PathValue("urn")
	var raw []byte
	err := s.store.View(func(tx store.Tx) error {
		var err error
		raw, err = tx.Model(urn)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "device model %q is not registered", urn)
	}
	if err != nil {
		return err
	}
	writeRawJSON(w, http.StatusOK, raw)
	return nil
}

func toAPIDevice(d *store.Device) api.Device {
	return api.Device{
		ID: d.ID, HardwareID: d.HardwareID, Type: d.Type, State: d.State, EndpointID: d.EndpointID,
		Gateway: d.Gateway, Models: d.Models, Metadata: d.Metadata,
		Created: d.Created, ActivatedAt: d.ActivatedAt, LastSeen: d.LastSeen,
	}
}

// handleDevicePost registers a device (201 with its shared secret; 409 when
// the hardware id is taken).
func (s *Server) handleDevicePost(w http.ResponseWriter, r *http.Request) error {
	var body api.RegisterDevice
	if err := decodeBody(w, r, "register device", &body, true); err != nil {
		return err
	}
	switch body.Type {
	case "":
		body.Type = api.DeviceTypeDirect
	case api.DeviceTypeDirect, api.DeviceTypeGateway, api.DeviceTypeIndirect:
	default:
		return errorf(http.StatusBadRequest, "register device: type is %q, expected %s, %s or %s", body.Type, api.DeviceTypeDirect, api.DeviceTypeGateway, api.DeviceTypeIndirect)
	}
	if body.SharedSecret == "" {
		b := make([]byte, 24)
		rand.Read(b)
		body.SharedSecret = base64.RawURLEncoding.EncodeToString(b)
	} else if len(body.SharedSecret) > maxSharedSecret || !utf8.ValidString(body.SharedSecret) {
		return errorf(http.StatusBadRequest, "register device: sharedSecret must be valid UTF-8 of at most %d bytes", maxSharedSecret)
	}
	d := &store.Device{
		ID: newID(), HardwareID: body.HardwareID, Type: body.Type, State: api.StateRegistered,
		SharedSecret: body.SharedSecret, Metadata: body.Metadata, Created: s.now().UnixMilli(),
	}
	if d.HardwareID == "" {
		d.HardwareID = d.ID
	}
	err := s.store.Update(func(tx store.Tx) error { return tx.PutDevice(d) })
	if errors.Is(err, store.ErrExists) {
		return errorf(http.StatusConflict, "register device: hardware id %q is already registered", d.HardwareID)
	}
	if err != nil {
		return err
	}
	s.log.Info("device registered", "activation_id", d.ID, "hardware_id", d.HardwareID, "type", d.Type)
	out := toAPIDevice(d)
	out.SharedSecret = d.SharedSecret
	w.Header().Set("Location", api.Root+"/devices/"+url.PathEscape(d.ID))
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) handleDeviceList(w http.ResponseWriter, r *http.Request) error {
	list := api.List[api.Device]{Items: []api.Device{}}
	err := s.store.View(func(tx store.Tx) error {
		ds, err := tx.Devices()
		for _, d := range ds {
			list.Items = append(list.Items, toAPIDevice(d))
		}
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// device loads the device named by the path's {id} (activation or endpoint id).
func (s *Server) device(r *http.Request) (*store.Device, error) {
	id := r.PathValue("id")
	var d *store.Device
	err := s.store.View(func(tx store.Tx) error {
		var err error
		d, err = tx.Device(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, "device %q is not registered", id)
	}
	return d, err
}

func (s *Server) handleDeviceGet(w http.ResponseWriter, r *http.Request) error {
	d, err := s.device(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toAPIDevice(d))
	return nil
}

// serverURI is PublicURL with an explicit port (TLV 1 is scheme://host:port).
func (s *Server) serverURI() string { return withPort(s.cfg.PublicURL) }

// withPort is a URL validated by Open, with an explicit port.
func withPort(raw string) string {
	u, _ := url.Parse(raw)
	if u.Port() == "" {
		port := map[string]string{"https": "443", "http": "80", "mqtts": "8883", "mqtt": "1883"}[u.Scheme]
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u.Scheme + "://" + u.Host
}

// handleProvisioningFile writes the provisioning file of a registered,
// not yet activated, directly connected device or gateway.
func (s *Server) handleProvisioningFile(w http.ResponseWriter, r *http.Request) error {
	var body api.ProvisioningFileRequest
	if err := decodeBody(w, r, "provisioning file", &body, true); err != nil {
		return err
	}
	d, err := s.device(r)
	if err != nil {
		return err
	}
	if len(body.Passphrase) < MinPassphraseLen {
		return errorf(http.StatusBadRequest, "provisioning file: passphrase is %d characters, expected at least %d", len(body.Passphrase), MinPassphraseLen)
	}
	if d.Type == api.DeviceTypeIndirect {
		return errorf(http.StatusBadRequest, "provisioning file: device %q is indirectly connected, expected a directly connected device or a gateway (its gateway activates it)", d.ID)
	}
	if d.State == api.StateActivated {
		return errorf(http.StatusConflict, "provisioning file: device %q is already activated, a provisioning file can only activate a registered device", d.ID)
	}
	mqtt := false
	switch body.Transport {
	case "", "https":
	case "mqtt":
		if s.cfg.MQTTURL == "" {
			return errorf(http.StatusBadRequest, "provisioning file: transport mqtt needs an MQTT broker, but this cloud runs none (start it with --mqtt-listen or --mqtt-broker)")
		}
		mqtt = true
	default:
		return errorf(http.StatusBadRequest, "provisioning file: transport is %q, expected \"https\" or \"mqtt\"", body.Transport)
	}
	uri := s.serverURI()
	if mqtt {
		uri = withPort(s.cfg.MQTTURL)
	}
	a := &trust.Assets{ServerURI: uri, ClientID: d.ID, SharedSecret: []byte(d.SharedSecret), TrustAnchors: s.cfg.TrustAnchors}
	var file []byte
	switch body.Format {
	case "", "v2":
		var opts []trust.Option
		if s.cfg.KDFIterations > 0 {
			opts = append(opts, trust.WithIterations(s.cfg.KDFIterations))
		}
		file, err = trust.EncodeV2(a, body.Passphrase, rand.Reader, opts...)
	case "oracle":
		if mqtt {
			return errorf(http.StatusBadRequest, "provisioning file: format oracle carries an https server URI only (Oracle's JavaScript library reads no other from it), expected transport https or format v2")
		}
		if len(s.cfg.PublicURL) < 8 || s.cfg.PublicURL[:8] != "https://" {
			return errorf(http.StatusBadRequest, "provisioning file: format oracle needs an https server URI (Oracle's clients speak HTTPS only), the cloud's PublicURL is %q", s.cfg.PublicURL)
		}
		for i, der := range a.TrustAnchors {
			// Oracle's JS library parses trust anchors with node-forge, which
			// reads RSA certificates only: such a file would crash it.
			if c, perr := x509.ParseCertificate(der); perr == nil && c.PublicKeyAlgorithm != x509.RSA {
				return errorf(http.StatusConflict, "provisioning file: format oracle needs RSA trust anchors (Oracle's JS library reads no other), but trust anchor %d (%s) has a key of type %s: start iotcloud on a new data directory to get an RSA CA, or use format v2", i, c.Subject.CommonName, c.PublicKeyAlgorithm)
			}
		}
		file, err = trust.EncodeOracle(a, body.Passphrase, rand.Reader)
	default:
		return errorf(http.StatusBadRequest, "provisioning file: format is %q, expected \"v2\" or \"oracle\"", body.Format)
	}
	if err != nil {
		return errorf(http.StatusBadRequest, "provisioning file: %v", err)
	}
	s.log.Info("provisioning file written", "activation_id", d.ID, "format", body.Format, "server_uri", a.ServerURI)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", d.ID+".conf"))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", fmt.Sprint(len(file)))
	w.WriteHeader(http.StatusOK)
	w.Write(file)
	return nil
}

// targetModel loads the device and model of an attribute or action path and
// checks the device is activated and implements the model.
func (s *Server) targetModel(r *http.Request) (*store.Device, *model.DeviceModel, error) {
	d, err := s.device(r)
	if err != nil {
		return nil, nil, err
	}
	urn := r.PathValue("urn")
	if !slices.Contains(d.Models, urn) {
		return nil, nil, errorf(http.StatusNotFound, "device %q does not implement device model %q", d.ID, urn)
	}
	var dm *model.DeviceModel
	err = s.store.View(func(tx store.Tx) error {
		dm, err = loadModel(tx, urn, http.StatusNotFound)
		return err
	})
	return d, dm, err
}

func (s *Server) handleAttributesGet(w http.ResponseWriter, r *http.Request) error {
	d, err := s.device(r)
	if err != nil {
		return err
	}
	urn := r.PathValue("urn")
	if !slices.Contains(d.Models, urn) {
		return errorf(http.StatusNotFound, "device %q does not implement device model %q", d.ID, urn)
	}
	var a *store.Attributes
	err = s.store.View(func(tx store.Tx) error {
		a, err = tx.Attributes(d.EndpointID, urn)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.Values)
	return nil
}

// sendRequest queues a request to d and answers 202 with its id.
func (s *Server) sendRequest(w http.ResponseWriter, d *store.Device, method, u string, headers map[string][]string, body []byte) error {
	if d.State != api.StateActivated {
		return errorf(http.StatusConflict, "device %q is not activated, expected an activated device to send requests to", d.ID)
	}
	route := routeOf(d)
	var req *store.Request
	err := s.store.Update(func(tx store.Tx) error {
		var err error
		req, err = s.enqueue(tx, d.EndpointID, route, method, u, headers, body)
		return err
	})
	if err != nil {
		return err
	}
	s.wake.notify(route)
	w.Header().Set("Location", api.Root+"/requests/"+req.ID)
	writeJSON(w, http.StatusAccepted, api.Accepted{RequestID: req.ID})
	return nil
}

// handleAttributeSet validates a value for a writable attribute and sends it
// in the PATCH form (§11): POST deviceModels/<urn>/attributes with
// x-http-method-override: PATCH and body {"<name>": value}.
func (s *Server) handleAttributeSet(w http.ResponseWriter, r *http.Request) error {
	var body api.SetAttribute
	if err := decodeBody(w, r, "set attribute", &body, true); err != nil {
		return err
	}
	d, dm, err := s.targetModel(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	attr, ok := dm.Attribute(name)
	if !ok {
		return errorf(http.StatusNotFound, "device model %q has no attribute %q", dm.URN, name)
	}
	if !attr.Writable {
		return errorf(http.StatusBadRequest, "attribute %q of %q is not writable", attr.Name, dm.URN)
	}
	v, err := attr.Check(body.Value)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	payload, err := json.Marshal(map[string]model.Value{attr.Name: v})
	if err != nil {
		return err
	}
	headers := map[string][]string{message.MethodOverrideHeader: {http.MethodPatch}}
	return s.sendRequest(w, d, http.MethodPost, "deviceModels/"+dm.URN+"/attributes", headers, payload)
}

// handleActionCall validates the arguments of an action and sends it as POST
// deviceModels/<urn>/actions/<name>: {"value": v} for a one-argument legacy
// action, the named arguments otherwise, and an empty body for no argument.
func (s *Server) handleActionCall(w http.ResponseWriter, r *http.Request) error {
	data, err := readBody(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	var raw map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return errorf(http.StatusBadRequest, "call action: invalid JSON body: %v, expected {\"value\": v} or named arguments", err)
		}
	}
	d, dm, err := s.targetModel(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	act, ok := dm.Action(name)
	if !ok {
		return errorf(http.StatusNotFound, "device model %q has no action %q", dm.URN, name)
	}
	args, err := act.ConvertArgs(raw)
	if err != nil {
		return errorf(http.StatusBadRequest, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	var payload []byte
	if len(act.Arguments) > 0 {
		if payload, err = json.Marshal(args); err != nil {
			return err
		}
	}
	return s.sendRequest(w, d, http.MethodPost, "deviceModels/"+dm.URN+"/actions/"+act.Name, nil, payload)
}

// handleRequestGet reports a request's status; a PENDING or DELIVERED request
// past its time to live is marked EXPIRED here.
func (s *Server) handleRequestGet(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req *store.Request
	now := s.now().UnixMilli()
	err := s.store.View(func(tx store.Tx) error {
		var err error
		req, err = tx.Request(id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "request %q does not exist", id)
	}
	if err != nil {
		return err
	}
	if (req.Status == store.RequestPending || req.Status == store.RequestDelivered) && req.Expires <= now {
		err = s.store.Update(func(tx store.Tx) error {
			cur, err := tx.Request(id)
			if err != nil {
				return err
			}
			if cur.Status == store.RequestPending || cur.Status == store.RequestDelivered {
				cur.Status, cur.Updated = store.RequestExpired, now
				if err := tx.PutRequest(cur); err != nil {
					return err
				}
			}
			req = cur
			return nil
		})
		if err != nil {
			return err
		}
	}
	out := api.Request{ID: req.ID, Destination: req.Destination, Method: req.Method, URL: req.URL,
		Status: req.Status, Created: req.Created, Updated: req.Updated}
	if resp := req.Response; resp != nil {
		out.Response = &api.Response{StatusCode: resp.StatusCode, Headers: resp.Headers, Body: string(resp.Body)}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
