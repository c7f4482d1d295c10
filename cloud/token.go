package cloud

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/auth"
	"github.com/iotnode/iotnode/cloud/store"
)

const assertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"` // milliseconds (protocol.md §1)
}

// handleToken is the OAuth2 token endpoint (protocol.md §1).
//
// 400: malformed form or assertion, unknown grant or scope. 401: unknown
// client, wrong algorithm, bad signature or claims, scope not allowed for the
// device's state. 403 with currentTime: exp outside the accepted window.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return errorf(http.StatusBadRequest, "token request: body is not a URL-encoded form: %v", err)
	}
	if g := form.Get("grant_type"); g != "client_credentials" {
		return errorf(http.StatusBadRequest, "token request: grant_type is %q, expected \"client_credentials\"", g)
	}
	at := form.Get("client_assertion_type")
	if un, err := url.QueryUnescape(at); err == nil {
		at = un // tolerate a doubly encoded %3A
	}
	if at != assertionTypeJWT {
		return errorf(http.StatusBadRequest, "token request: client_assertion_type is %q, expected %q", at, assertionTypeJWT)
	}
	scope := form.Get("scope")
	if scope != auth.ScopeActivation && scope != auth.ScopeDevice {
		return errorf(http.StatusBadRequest, "token request: scope is %q, expected %q or empty", scope, auth.ScopeActivation)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return errorf(http.StatusBadRequest, "token request: client_assertion is missing, expected a JWT")
	}
	a, err := auth.Parse(assertion)
	if err != nil {
		s.log.Warn("token request rejected", "reason", "malformed assertion", "remote", r.RemoteAddr)
		return errorf(http.StatusBadRequest, "token request: %v", err)
	}
	d, err := s.verifyAssertion("token request", a, r.RemoteAddr)
	if err != nil {
		return err
	}
	reject := func(status int, msg string) error {
		s.log.Warn("token request rejected", "client_id", a.Subject, "reason", msg, "remote", r.RemoteAddr)
		return errorf(status, "token request: %s", msg)
	}
	now := s.now()
	tok := auth.Token{Scope: scope, Expiry: now.Add(auth.TokenLifetime)}
	switch {
	case scope == auth.ScopeActivation && d.State == api.StateActivated:
		return reject(http.StatusUnauthorized, "device \""+d.ID+"\" is already activated, expected scope \"\" and an RS256 assertion from endpoint \""+d.EndpointID+"\"")
	case scope == auth.ScopeActivation:
		tok.Subject = d.ID
	case d.State != api.StateActivated:
		return reject(http.StatusUnauthorized, "device \""+d.ID+"\" is not activated, expected scope \""+auth.ScopeActivation+"\" to activate it first")
	default:
		tok.Subject = d.EndpointID
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: s.tokens.Issue(tok),
		TokenType:   "Bearer",
		ExpiresIn:   auth.TokenLifetime.Milliseconds(),
	})
	return nil
}

// verifyAssertion finds the device a parsed client assertion names and
// verifies the assertion with that device's key: HS256 with the shared secret
// before activation, RS256 with the activation key after. These are the
// checks of the token endpoint and of an MQTT CONNECT; op ("token request",
// "mqtt connect") prefixes the errors and the warnings logged. Errors:
// *httpError 401 (unknown client, indirectly connected device, bad signature
// or claims), 403 with currentTime (clock skew), anything else internal.
func (s *Server) verifyAssertion(op string, a *auth.Assertion, remote string) (*store.Device, error) {
	reject := func(status int, msg string) error {
		s.log.Warn(op+" rejected", "client_id", a.Subject, "reason", msg, "remote", remote)
		return errorf(status, "%s: %s", op, msg)
	}
	var d *store.Device
	err := s.store.View(func(tx store.Tx) error {
		var err error
		d, err = tx.Device(a.Subject)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, reject(http.StatusUnauthorized, "unknown client \""+a.Subject+"\", expected a registered activation id or endpoint id")
	}
	if err != nil {
		return nil, err
	}
	if d.Type == api.DeviceTypeIndirect {
		return nil, reject(http.StatusUnauthorized, "client \""+a.Subject+"\" is an indirectly connected device: its gateway authenticates for it")
	}
	var key auth.Key
	if len(d.PublicKey) > 0 {
		pub, err := x509.ParsePKIXPublicKey(d.PublicKey)
		rk, ok := pub.(*rsa.PublicKey)
		if err != nil || !ok {
			return nil, errors.New("stored public key of " + d.ID + " is not an RSA key")
		}
		key.PublicKey = rk
	} else {
		key.SharedSecret = []byte(d.SharedSecret)
	}
	now := s.now()
	if err := a.Verify(key, now); err != nil {
		if errors.Is(err, auth.ErrClockSkew) {
			s.log.Warn(op+" rejected", "client_id", a.Subject, "reason", "clock skew", "remote", remote)
			e := errorf(http.StatusForbidden, "%s: %v", op, err)
			e.currentTime = now.UnixMilli()
			return nil, e
		}
		return nil, reject(http.StatusUnauthorized, err.Error())
	}
	return d, nil
}

// deviceHandler is a device API handler, called with the authenticated device.
type deviceHandler func(w http.ResponseWriter, r *http.Request, d *store.Device) error

// authDevice checks the bearer access token and its scope and returns the
// device it was issued to.
func (s *Server) authDevice(r *http.Request, scope string) (*store.Device, error) {
	raw := bearer(r)
	if raw == "" {
		return nil, s.unauthorized(r, "missing bearer access token, expected \"Authorization: Bearer <token from oauth2/token>\"")
	}
	tok, err := s.tokens.Check(raw, s.now())
	if err != nil {
		if errors.Is(err, auth.ErrTokenExpired) {
			return nil, s.unauthorized(r, "access token expired, get a new one from oauth2/token")
		}
		return nil, s.unauthorized(r, "invalid access token, get one from oauth2/token")
	}
	if tok.Scope != scope {
		return nil, errorf(http.StatusForbidden, "access token has scope %q, expected %q for %s", tok.Scope, scope, r.URL.Path)
	}
	var d *store.Device
	err = s.store.View(func(tx store.Tx) error {
		d, err = tx.Device(tok.Subject)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, s.unauthorized(r, "access token of unknown device \""+tok.Subject+"\"")
	}
	if err != nil {
		return nil, err
	}
	if scope == auth.ScopeDevice {
		if d.EndpointID != tok.Subject {
			return nil, s.unauthorized(r, "access token was issued to \""+tok.Subject+"\", which is not an endpoint id")
		}
		if h := r.Header.Get("X-EndpointId"); h != "" && h != d.EndpointID {
			return nil, errorf(http.StatusForbidden, "X-EndpointId %q does not match the authenticated endpoint %q", h, d.EndpointID)
		}
	} else if h := r.Header.Get("X-ActivationId"); h != "" && h != d.ID {
		return nil, errorf(http.StatusForbidden, "X-ActivationId %q does not match the authenticated activation id %q", h, d.ID)
	}
	return d, nil
}

func (s *Server) unauthorized(r *http.Request, msg string) error {
	s.log.Warn("device API call rejected", "method", r.Method, "path", r.URL.Path, "reason", msg, "remote", r.RemoteAddr)
	e := errorf(http.StatusUnauthorized, "%s", msg)
	e.header = map[string]string{"WWW-Authenticate": `Bearer realm="iotcloud"`}
	return e
}

// activationOnly requires an activation-scope token.
func (s *Server) activationOnly(h deviceHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.authDevice(r, auth.ScopeActivation)
		if err != nil {
			return err
		}
		return h(w, r, d)
	}
}

// deviceOnly requires a device-scope token of an activated device.
func (s *Server) deviceOnly(h deviceHandler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		d, err := s.authDevice(r, auth.ScopeDevice)
		if err != nil {
			return err
		}
		return h(w, r, d)
	}
}
