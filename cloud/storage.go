package cloud

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iotnode/iotnode/cloud/store"
)

// StorageURLLifetime is how long a storage URL from provisioner/storage is valid.
const StorageURLLifetime = 15 * time.Minute

// maxObjectName bounds an object path.
const maxObjectName = 1024

type storageRequest struct {
	Object string `json:"object"`
	Method string `json:"method"`
}

type storageResponse struct {
	StorageURL string `json:"storageUrl"`
}

// checkObjectName refuses names that could escape a directory or confuse a
// URL: empty, too long, invalid UTF-8, control characters, backslashes, and
// empty, "." or ".." segments.
func checkObjectName(name string) error {
	switch {
	case name == "":
		return errors.New("empty, expected a name such as \"photo.jpg\"")
	case len(name) > maxObjectName:
		return fmt.Errorf("%d bytes long, expected at most %d", len(name), maxObjectName)
	case !utf8.ValidString(name):
		return errors.New("not valid UTF-8")
	case strings.ContainsAny(name, "\\"):
		return errors.New("contains a backslash, expected '/'-separated segments")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return errors.New("contains a control character")
		}
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("has the segment %q, expected non-empty segments other than \".\" and \"..\"", seg)
		}
	}
	return nil
}

func (s *Server) storageSig(method, path string, expires int64) string {
	mac := hmac.New(sha256.New, s.storageKey)
	fmt.Fprintf(mac, "%s\n%s\n%d", method, path, expires)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// handleStorageProvision is POST provisioner/storage (§7, new style): a
// signed URL of the object endpoint, valid for one method and 15 minutes.
// Object names are placed under "<endpointId>/" unless they already start with it.
func (s *Server) handleStorageProvision(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	var body storageRequest
	if err := decodeBody(w, r, "storage provisioning", &body, false); err != nil {
		return err
	}
	method := strings.ToUpper(body.Method)
	if method != http.MethodPut && method != http.MethodGet && method != http.MethodHead {
		return errorf(http.StatusBadRequest, "storage provisioning: method is %q, expected PUT, GET or HEAD", body.Method)
	}
	if err := checkObjectName(body.Object); err != nil {
		return errorf(http.StatusBadRequest, "storage provisioning: object name %q: %v", body.Object, err)
	}
	path := body.Object
	if !strings.HasPrefix(path, d.EndpointID+"/") {
		path = d.EndpointID + "/" + path
		if len(path) > maxObjectName {
			return errorf(http.StatusBadRequest, "storage provisioning: object name %q is too long with the endpoint prefix, expected at most %d bytes", body.Object, maxObjectName)
		}
	}
	expires := s.now().Add(StorageURLLifetime).Unix()
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	u := fmt.Sprintf("%s/storage/o/%s?expires=%d&sig=%s", s.cfg.PublicURL, strings.Join(segs, "/"), expires, s.storageSig(method, path, expires))
	writeJSON(w, http.StatusOK, storageResponse{StorageURL: u})
	return nil
}

// handleStorageClassic answers GET provisioner/storage: classic storage
// (Oracle Storage Cloud with auth tokens) is not offered, and 405 is the
// answer Oracle's clients read as "not classic".
func (s *Server) handleStorageClassic(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	e := errorf(http.StatusMethodNotAllowed, "classic storage (GET %s) is not supported: iotcloud offers new-style storage only, POST {\"object\",\"method\"} to get a storage URL", r.URL.Path)
	e.header = map[string]string{"Allow": "POST"}
	return e
}

// checkStorageURL verifies the signature and expiry of an object URL for r's
// method; a GET URL also allows HEAD.
func (s *Server) checkStorageURL(r *http.Request, path string) error {
	if err := checkObjectName(path); err != nil || !strings.Contains(path, "/") {
		return errorf(http.StatusNotFound, "storage: no object %q", path)
	}
	q := r.URL.Query()
	expires, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	sig := q.Get("sig")
	if err != nil || sig == "" {
		return errorf(http.StatusForbidden, "storage: URL is not signed, expected the expires and sig parameters from POST provisioner/storage")
	}
	ok := hmac.Equal([]byte(sig), []byte(s.storageSig(r.Method, path, expires)))
	if !ok && r.Method == http.MethodHead {
		ok = hmac.Equal([]byte(sig), []byte(s.storageSig(http.MethodGet, path, expires)))
	}
	if !ok {
		s.log.Warn("storage access rejected: bad signature", "method", r.Method, "path", path, "remote", r.RemoteAddr)
		return errorf(http.StatusForbidden, "storage: URL signature does not match (a storage URL is valid only for the object and method it was issued for)")
	}
	if now := s.now(); now.Unix() > expires {
		return errorf(http.StatusForbidden, "storage: URL expired at %s, server time is %s", time.Unix(expires, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func isMetaHeader(name string) bool {
	l := strings.ToLower(name)
	return strings.HasPrefix(l, "opc-meta-") || strings.HasPrefix(l, "x-object-meta-")
}

// handleObjectPut stores the body of a PUT to a signed object URL, streaming it
// to a file under DataDir/objects (at most MaxObjectBytes).
func (s *Server) handleObjectPut(w http.ResponseWriter, r *http.Request) error {
	path := r.PathValue("path")
	if err := s.checkStorageURL(r, path); err != nil {
		return err
	}
	limit := s.cfg.MaxObjectBytes
	if r.ContentLength > limit {
		return errorf(http.StatusRequestEntityTooLarge, "storage: object is %d bytes, expected at most %d", r.ContentLength, limit)
	}
	tmp, err := os.CreateTemp(s.objectsDir, ".upload-*")
	if err != nil {
		return fmt.Errorf("store object %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename this fails harmlessly
	n, err := io.Copy(tmp, http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, "storage: object is larger than %d bytes", limit)
		}
		return errorf(http.StatusBadRequest, "storage: read object %s: %v", path, err)
	}
	sum := sha256.Sum256([]byte(path))
	file := hex.EncodeToString(sum[:]) + "-" + newUUID()
	if err := os.Rename(tmp.Name(), filepath.Join(s.objectsDir, file)); err != nil {
		return fmt.Errorf("store object %s: %w", path, err)
	}
	obj := &store.Object{
		Path:            path,
		File:            file,
		ContentType:     r.Header.Get("Content-Type"),
		ContentEncoding: r.Header.Get("Content-Encoding"),
		Length:          n,
		Modified:        s.now().UnixMilli(),
	}
	if obj.ContentType == "" {
		obj.ContentType = "application/octet-stream"
	}
	for k, v := range r.Header {
		if isMetaHeader(k) && len(v) > 0 {
			if obj.Meta == nil {
				obj.Meta = map[string]string{}
			}
			obj.Meta[k] = v[0]
		}
	}
	var old string
	err = s.store.Update(func(tx store.Tx) error {
		old = ""
		if prev, err := tx.Object(path); err == nil {
			old = prev.File
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return tx.PutObject(obj)
	})
	if err != nil {
		os.Remove(filepath.Join(s.objectsDir, file))
		return err
	}
	if old != "" {
		os.Remove(filepath.Join(s.objectsDir, old))
	}
	s.log.Debug("object stored", "path", path, "bytes", n)
	w.Header().Set("Last-Modified", time.UnixMilli(obj.Modified).UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	return nil
}

// handleObjectGet serves GET and HEAD of a signed object URL, with the
// metadata headers the object was stored with.
func (s *Server) handleObjectGet(w http.ResponseWriter, r *http.Request) error {
	path := r.PathValue("path")
	if err := s.checkStorageURL(r, path); err != nil {
		return err
	}
	var obj *store.Object
	err := s.store.View(func(tx store.Tx) error {
		var err error
		obj, err = tx.Object(path)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "storage: no object %q", path)
	}
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(s.objectsDir, obj.File))
	if err != nil {
		return fmt.Errorf("open object %s: %w", path, err)
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", obj.ContentType)
	if obj.ContentEncoding != "" {
		h.Set("Content-Encoding", obj.ContentEncoding)
	}
	for k, v := range obj.Meta {
		h.Set(k, v)
	}
	http.ServeContent(w, r, "", time.UnixMilli(obj.Modified), f)
	return nil
}
