package cloud

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/auth"
	"github.com/iotnode/iotnode/cloud/store"
)

// MaxBodyBytes caps every request body except stored objects (1 MiB).
const MaxBodyBytes = 1 << 20

// MaxPollTimeout caps iot.timeout; it is also the timeout of iot.sync without one.
const MaxPollTimeout = 60 * time.Second

// Server serves the device and enterprise APIs. Its methods are safe for
// concurrent use.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	tokens     *auth.Tokens
	storageKey []byte
	objectsDir string
	mux        *http.ServeMux
	wake       *notifier

	mu     sync.RWMutex // guards closed against wg.Add after Close started
	closed bool
	done   chan struct{} // closed by Close: ends long polls
	// draining is closed by Drain (and Close): long polls answer at once.
	draining  chan struct{}
	drainOnce sync.Once
	wg        sync.WaitGroup

	seenMu sync.Mutex
	seen   map[string]int64 // endpoint id -> last lastSeen written (ms), to throttle writes on polls
}

// Open validates cfg, creates DataDir if missing and opens the store in it.
// It starts no goroutines.
func Open(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	objects := filepath.Join(cfg.DataDir, "objects")
	if err := os.MkdirAll(objects, 0o700); err != nil {
		return nil, fmt.Errorf("open cloud: create data directory: %w", err)
	}
	st := cfg.Store
	if st == nil {
		bolt, err := store.Open(filepath.Join(cfg.DataDir, "cloud.db"), store.Options{})
		if err != nil {
			return nil, fmt.Errorf("open cloud: %w", err)
		}
		st = bolt
	}
	var tokenKey, storageKey []byte
	err := st.Update(func(tx store.Tx) error {
		var err error
		if tokenKey, err = tx.Key("access_token", 32); err != nil {
			return err
		}
		storageKey, err = tx.Key("storage_url", 32)
		return err
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open cloud: %w", err)
	}
	tokens, err := auth.NewTokens(tokenKey)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open cloud: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		store:      st,
		tokens:     tokens,
		storageKey: storageKey,
		objectsDir: objects,
		wake:       newNotifier(),
		done:       make(chan struct{}),
		draining:   make(chan struct{}),
		seen:       map[string]int64{},
	}
	s.routes()
	return s, nil
}

// Handler returns the handler of both APIs and the object endpoint. After
// Close it answers 503.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Close wakes and ends every long poll, waits for every request in progress
// to finish, and closes the store. Later requests get 503. It is safe to call
// more than once. Call it before (or while) shutting the http.Server down:
// http.Server.Shutdown waits for long polls, and only Close ends them.
func (s *Server) Close() error {
	s.Drain()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.wg.Wait()
	return s.store.Close()
}

// Drain makes every long poll, running or to come, answer at once with what
// is pending, so that an http.Server.Shutdown that follows does not wait for
// them. The server keeps serving everything else until Close. Safe to call
// more than once and concurrently.
func (s *Server) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}

func (s *Server) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, &httpError{status: http.StatusServiceUnavailable, msg: "iotcloud is shutting down"})
		return
	}
	defer s.wg.Done()
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r)
	// Never the query: storage URLs carry their signature there.
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
		"duration", time.Since(start), "remote", r.RemoteAddr)
}

// httpError is an error answered with its status and api.Error body.
type httpError struct {
	status      int
	msg         string
	index       *int
	field       string
	currentTime int64
	header      map[string]string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, e *httpError) {
	for k, v := range e.header {
		w.Header().Set(k, v)
	}
	writeJSON(w, e.status, api.Error{Status: e.status, Message: e.msg, Index: e.index, Field: e.field, CurrentTime: e.currentTime})
}

// writeJSON writes v as compact JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"status":500,"message":"internal error: cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}

// handlerFunc is a handler that reports failure by returning an error:
// *httpError as is, anything else as 500 (logged, not shown).
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) wrap(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
			he = errorf(http.StatusInternalServerError, "internal error (logged by the server)")
		}
		writeError(w, he)
	}
}

// handle registers path with one handler per method; other methods get a
// JSON 405 with Allow.
func (s *Server) handle(path string, methods map[string]handlerFunc) {
	allowed := make([]string, 0, len(methods))
	for m := range methods {
		allowed = append(allowed, m)
	}
	slices.Sort(allowed)
	allow := strings.Join(allowed, ", ")
	s.mux.HandleFunc(path, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		h, ok := methods[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = methods[http.MethodGet]
		}
		if !ok {
			e := errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s, expected %s", r.Method, r.URL.Path, allow)
			e.header = map[string]string{"Allow": allow}
			return e
		}
		return h(w, r)
	}))
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	v2, priv := api.Root, "/iot/privateapi/v2"
	// Device API.
	s.handle("/iot/api/v1/oauth2/token", map[string]handlerFunc{"POST": s.handleToken})
	s.handle(v2+"/oauth2/token", map[string]handlerFunc{"POST": s.handleToken})
	s.handle(v2+"/activation/policy", map[string]handlerFunc{"GET": s.activationOnly(s.handleActivationPolicy)})
	s.handle(v2+"/activation/direct", map[string]handlerFunc{"POST": s.activationOnly(s.handleDirectActivation)})
	s.handle(v2+"/activation/indirect/device", map[string]handlerFunc{"POST": s.deviceOnly(s.handleIndirectActivation)})
	s.handle(v2+"/messages", map[string]handlerFunc{
		"POST": s.deviceOnly(s.handleMessagesPost),
		"GET":  s.adminOnly(s.handleMessagesGet),
	})
	s.handle(v2+"/provisioner/storage", map[string]handlerFunc{
		"POST": s.deviceOnly(s.handleStorageProvision),
		"GET":  s.deviceOnly(s.handleStorageClassic),
	})
	s.handle(priv+"/deviceModels/{urn}/devicePolicies", map[string]handlerFunc{"GET": s.deviceOnly(s.handleDevicePolicyFind)})
	s.handle(priv+"/deviceModels/{urn}/devicePolicies/{id}", map[string]handlerFunc{"GET": s.deviceOnly(s.handleDevicePolicyGet)})
	s.handle(priv+"/deviceModels/{urn}/devicePolicies/{id}/devices", map[string]handlerFunc{"GET": s.deviceOnly(s.handleDevicePolicyDevices)})
	s.handle("/storage/o/{path...}", map[string]handlerFunc{
		"PUT": s.handleObjectPut, "GET": s.handleObjectGet, "HEAD": s.handleObjectGet,
	})
	// Both: device models.
	s.handle(v2+"/deviceModels/{urn}", map[string]handlerFunc{"GET": s.handleModelGet})
	// Enterprise API.
	s.handle(v2+"/deviceModels", map[string]handlerFunc{
		"POST": s.adminOnly(s.handleModelPost), "GET": s.adminOnly(s.handleModelList),
	})
	s.handle(v2+"/devices", map[string]handlerFunc{
		"POST": s.adminOnly(s.handleDevicePost), "GET": s.adminOnly(s.handleDeviceList),
	})
	s.handle(v2+"/devices/{id}", map[string]handlerFunc{"GET": s.adminOnly(s.handleDeviceGet)})
	s.handle(v2+"/devices/{id}/provisioningFile", map[string]handlerFunc{"POST": s.adminOnly(s.handleProvisioningFile)})
	s.handle(v2+"/devices/{id}/deviceModels/{urn}/attributes", map[string]handlerFunc{"GET": s.adminOnly(s.handleAttributesGet)})
	s.handle(v2+"/devices/{id}/deviceModels/{urn}/attributes/{name}", map[string]handlerFunc{"PUT": s.adminOnly(s.handleAttributeSet)})
	s.handle(v2+"/devices/{id}/deviceModels/{urn}/actions/{name}", map[string]handlerFunc{"POST": s.adminOnly(s.handleActionCall)})
	s.handle(v2+"/requests/{id}", map[string]handlerFunc{"GET": s.adminOnly(s.handleRequestGet)})
	s.handle(v2+"/devicePolicies", map[string]handlerFunc{
		"POST": s.adminOnly(s.handlePolicyPost), "GET": s.adminOnly(s.handlePolicyList),
	})
	s.handle(v2+"/devicePolicies/{id}", map[string]handlerFunc{
		"GET": s.adminOnly(s.handlePolicyGet), "DELETE": s.adminOnly(s.handlePolicyDelete),
	})
	s.handle(v2+"/devicePolicies/{id}/assignments", map[string]handlerFunc{"POST": s.adminOnly(s.handlePolicyAssign)})
	s.mux.HandleFunc("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))
}

// readBody reads the whole body, at most limit bytes (chunked bodies included).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errorf(http.StatusRequestEntityTooLarge, "request body is %d bytes, expected at most %d (1 MiB)", r.ContentLength, limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes (1 MiB)", limit)
		}
		return nil, errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	return data, nil
}

// decodeBody decodes a JSON object body into v. strict refuses unknown fields
// (the enterprise API, where a typo would otherwise be silently ignored).
func decodeBody(w http.ResponseWriter, r *http.Request, what string, v any, strict bool) error {
	data, err := readBody(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "%s: invalid JSON body: %v", what, err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "%s: invalid JSON body: more than one JSON value", what)
	}
	return nil
}

// now returns the configured clock's time.
func (s *Server) now() time.Time { return s.cfg.Now() }

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a fresh device or endpoint id: "0-" and 16 base32 characters.
func newID() string {
	b := make([]byte, 10)
	rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return "0-" + idEncoding.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// adminOnly requires the enterprise bearer token.
func (s *Server) adminOnly(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !s.isAdmin(r) {
			s.log.Warn("enterprise API call rejected", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			e := errorf(http.StatusUnauthorized, "enterprise API: missing or wrong bearer token, expected \"Authorization: Bearer <admin token>\"")
			e.header = map[string]string{"WWW-Authenticate": `Bearer realm="iotcloud"`}
			return e
		}
		return h(w, r)
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (s *Server) isAdmin(r *http.Request) bool {
	tok := bearer(r)
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AdminToken)) == 1
}

// notifier wakes long polls waiting for a route (an endpoint id).
type notifier struct {
	mu sync.Mutex
	m  map[string]*waitSet
}

type waitSet struct {
	ch chan struct{}
	n  int
}

func newNotifier() *notifier { return &notifier{m: map[string]*waitSet{}} }

// subscribe returns a channel closed by the next notify(key), and a function
// to call when the caller stops waiting.
func (n *notifier) subscribe(key string) (<-chan struct{}, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ws := n.m[key]
	if ws == nil {
		ws = &waitSet{ch: make(chan struct{})}
		n.m[key] = ws
	}
	ws.n++
	return ws.ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		ws.n--
		if ws.n == 0 && n.m[key] == ws {
			delete(n.m, key)
		}
	}
}

// notify wakes every waiter of key.
func (n *notifier) notify(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ws := n.m[key]; ws != nil {
		close(ws.ch)
		delete(n.m, key)
	}
}
