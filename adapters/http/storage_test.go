package http_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/ports"
)

// objectStore is an object endpoint over TLS (the reference cloud serves
// its signed URLs the same way, with the same certificate as the API).
// Each test sets the handler.
func objectStore(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// hang is a handler that reads the request and never answers, until the
// client goes away or the test ends.
func hang(t *testing.T) http.HandlerFunc {
	end := make(chan struct{})
	t.Cleanup(func() { close(end) }) // before the server's Close, which waits for handlers
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-end:
		}
	}
}

// signed is a storage URL of srv whose query is a credential.
func signed(srv *httptest.Server, name string) string {
	return srv.URL + "/storage/o/ep-1/" + name + "?expires=1&sig=SECRET-SIGNATURE"
}

func TestUploadSendsHeadersAndMetadata(t *testing.T) {
	type seen struct {
		method, path, query string
		header              http.Header
		length              int64
		chunked             bool
		body                []byte
	}
	tests := []struct {
		name       string
		meta       ports.ObjectMeta
		wantLength string // Content-Length header
		chunked    bool
	}{
		{name: "known length", meta: ports.ObjectMeta{ContentType: "image/jpeg", ContentEncoding: "gzip", Length: 11,
			Custom: map[string]string{"Camera": "front", "shot": "7"}}, wantLength: "11"},
		{name: "unknown length is chunked", meta: ports.ObjectMeta{Length: -1}, chunked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan seen, 1)
			srv := objectStore(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- seen{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(),
					length: r.ContentLength, chunked: slicesEqual(r.TransferEncoding, []string{"chunked"}), body: body}
				w.Header().Set("Last-Modified", "Sat, 01 Mar 2025 12:00:05 GMT")
			})
			c := newFakeCloud(t).client(true, nil)
			grant := map[string]string{"authorization": "Signature keyId=x", "x-date": "now", "content-length": "999", "host": "elsewhere"}
			meta, err := c.Upload(t.Context(), signed(srv, "snap.jpg"), grant, strings.NewReader("hello world"), tt.meta)
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			s := <-got
			if s.method != "PUT" || s.path != "/storage/o/ep-1/snap.jpg" || s.query != "expires=1&sig=SECRET-SIGNATURE" || string(s.body) != "hello world" {
				t.Errorf("request %s %s?%s body %q", s.method, s.path, s.query, s.body)
			}
			if s.chunked != tt.chunked || (tt.chunked && s.length != -1) || (!tt.chunked && s.length != 11) {
				t.Errorf("ContentLength %d, chunked %v; want chunked %v", s.length, s.chunked, tt.chunked)
			}
			wantType := tt.meta.ContentType
			if wantType == "" {
				wantType = "application/octet-stream"
			}
			checks := map[string]string{
				"Content-Type": wantType, "Content-Encoding": tt.meta.ContentEncoding, "Authorization": "Signature keyId=x",
				"X-Date": "now", "Content-Length": tt.wantLength, "Opc-Meta-Camera": tt.meta.Custom["Camera"], "Opc-Meta-Shot": tt.meta.Custom["shot"],
			}
			for k, want := range checks {
				if got := s.header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			want := tt.meta
			want.ContentType, want.Length = wantType, 11
			want.LastModified = time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC)
			if !reflect.DeepEqual(meta, want) {
				t.Errorf("Upload = %+v, want %+v", meta, want)
			}
		})
	}
}

func TestDownloadReturnsContentAndMetadata(t *testing.T) {
	content := []byte("\x1f\x8b gzip bytes stay as they are")
	var accept string
	srv := objectStore(t, func(w http.ResponseWriter, r *http.Request) {
		accept = r.Header.Get("Accept-Encoding")
		if r.Method != "GET" || r.Header.Get("X-Grant") != "g" || r.Header.Get("Authorization") != "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Encoding", "gzip")
		h.Set("Last-Modified", "Sat, 01 Mar 2025 12:00:05 GMT")
		h.Set("Opc-Meta-Camera", "front")
		h.Set("X-Object-Meta-Site", "lab")
		h.Set("Content-Length", strconv.Itoa(len(content)))
		w.Write(content)
	})
	c := newFakeCloud(t).client(true, nil)
	var buf bytes.Buffer
	meta, err := c.Download(t.Context(), signed(srv, "log.txt"), map[string]string{"X-Grant": "g"}, &buf)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	want := ports.ObjectMeta{ContentType: "text/plain", ContentEncoding: "gzip", Length: int64(len(content)),
		LastModified: time.Date(2025, 3, 1, 12, 0, 5, 0, time.UTC), Custom: map[string]string{"camera": "front", "site": "lab"}}
	if !reflect.DeepEqual(meta, want) || !bytes.Equal(buf.Bytes(), content) {
		t.Errorf("Download = %+v, %q\n want %+v, %q", meta, buf.Bytes(), want, content)
	}
	if accept != "identity" {
		t.Errorf("Accept-Encoding = %q, want identity (no transparent gunzip)", accept)
	}
}

// pattern is a reader of n bytes of a repeating pattern; each Read may
// wait for gate after produced bytes, so that a test can prove the content
// moves while it is produced.
type pattern struct {
	n, produced int64
	gateAt      int64
	gate        <-chan struct{}
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.produced >= p.n {
		return 0, io.EOF
	}
	if p.gate != nil && p.produced >= p.gateAt {
		select {
		case <-p.gate:
			p.gate = nil
		case <-time.After(10 * time.Second):
			return 0, errors.New("the other side never got the first bytes: the content is buffered, not streamed")
		}
	}
	n := min(int64(len(b)), p.n-p.produced)
	for i := range n {
		b[i] = byte((p.produced + i) % 251)
	}
	p.produced += n
	return int(n), nil
}

// hashing counts and hashes what is written, and closes reached once
// at bytes have arrived.
type hashing struct {
	n       int64
	h       hash
	at      int64
	reached chan struct{}
}

type hash interface {
	io.Writer
	Sum([]byte) []byte
}

func (w *hashing) Write(b []byte) (int, error) {
	w.h.Write(b)
	w.n += int64(len(b))
	if w.reached != nil && w.n >= w.at {
		close(w.reached)
		w.reached = nil
	}
	return len(b), nil
}

func patternSum(n int64) []byte {
	h := sha256.New()
	io.Copy(h, &pattern{n: n})
	return h.Sum(nil)
}

func TestLargeObjectsAreStreamed(t *testing.T) {
	const size = 64 << 20
	const first = 1 << 20
	want := patternSum(size)
	c := newFakeCloud(t).client(true, nil)

	t.Run("upload", func(t *testing.T) {
		got := make(chan struct{})
		var n int64
		var sum []byte
		srv := objectStore(t, func(w http.ResponseWriter, r *http.Request) {
			sink := &hashing{h: sha256.New(), at: first, reached: got}
			io.Copy(sink, r.Body)
			n, sum = sink.n, sink.h.Sum(nil)
		})
		// The reader stops after 1 MiB until the store has received 1 MiB:
		// a client that buffered the body would never send it.
		body := &pattern{n: size, gateAt: 2 * first, gate: got}
		meta, err := c.Upload(t.Context(), signed(srv, "big.bin"), nil, body, ports.ObjectMeta{Length: size})
		if err != nil {
			t.Fatalf("Upload: %v", err)
		}
		if meta.Length != size || n != size || !bytes.Equal(sum, want) {
			t.Errorf("stored %d bytes (reported %d), sha256 match %v; want %d", n, meta.Length, bytes.Equal(sum, want), size)
		}
	})
	t.Run("download", func(t *testing.T) {
		got := make(chan struct{})
		srv := objectStore(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			// The store stops after 2 MiB until the device has written 1 MiB.
			io.Copy(w, &pattern{n: size, gateAt: 2 * first, gate: got})
		})
		sink := &hashing{h: sha256.New(), at: first, reached: got}
		meta, err := c.Download(t.Context(), signed(srv, "big.bin"), nil, sink)
		if err != nil {
			t.Fatalf("Download: %v", err)
		}
		if meta.Length != size || sink.n != size || !bytes.Equal(sink.h.Sum(nil), want) {
			t.Errorf("wrote %d bytes (reported %d); want %d with the same sha256", sink.n, meta.Length, size)
		}
	})
}

// failingReader fails after some bytes.
type failingReader struct{ n int }

func (r *failingReader) Read(b []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("camera buffer lost")
	}
	n := min(r.n, len(b))
	r.n -= n
	return n, nil
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestStorageErrors(t *testing.T) {
	answer := func(status int, body string, header ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		hang       bool
		download   bool
		body       io.Reader
		length     int64
		w          io.Writer
		timeout    time.Duration
		want       string
		permanent  bool
		retryAfter time.Duration
		is         error
	}{
		{name: "server error is transient", handler: answer(500, `{"status":500,"message":"disk array offline"}`),
			want: `upload storage object "ep-1/x.bin": cloud answered 500: disk array offline`},
		{name: "unavailable with Retry-After", handler: answer(503, "", "Retry-After", "7"),
			want: `upload storage object "ep-1/x.bin": cloud answered 503: service unavailable`, retryAfter: 7 * time.Second},
		{name: "too many requests is transient", handler: answer(429, "slow down"),
			want: `upload storage object "ep-1/x.bin": cloud answered 429: slow down`},
		{name: "expired signature is permanent", handler: answer(403, `{"status":403,"message":"storage: URL expired"}`),
			want: `upload storage object "ep-1/x.bin": cloud answered 403: storage: URL expired`, permanent: true},
		{name: "too large is permanent", handler: answer(413, `{"status":413,"message":"storage: object is larger than 1000 bytes"}`),
			want: `upload storage object "ep-1/x.bin": cloud answered 413: storage: object is larger than 1000 bytes`, permanent: true},
		{name: "missing object", handler: answer(404, `{"status":404,"message":"storage: no object"}`), download: true,
			want: `download storage object "ep-1/x.bin": cloud answered 404: storage: no object (not found)`, permanent: true, is: ports.ErrNotFound},
		{name: "unreadable content is permanent", handler: answer(200, ""), body: &failingReader{n: 5}, length: -1,
			want: `upload storage object "ep-1/x.bin": read the content after 5 bytes: camera buffer lost`, permanent: true},
		{name: "content shorter than announced", handler: answer(200, ""), body: strings.NewReader("short"), length: 10,
			want: `upload storage object "ep-1/x.bin": the content ended after 5 bytes, 10 were announced`, permanent: true},
		{name: "unwritable output is permanent", handler: answer(200, "content"), download: true, w: failingWriter{},
			want: `download storage object "ep-1/x.bin": write the content after 0 bytes: disk full`, permanent: true},
		{name: "broken off download is transient", download: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only part")
		}, want: `download storage object "ep-1/x.bin": the download from 127.0.0.1:PORT broke off after 9 bytes: unexpected EOF`},
		{name: "stalled store is transient", timeout: 200 * time.Millisecond, hang: true, want: `upload storage object "ep-1/x.bin": no progress with 127.0.0.1:PORT for 200ms`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.handler
			if tt.hang {
				h = hang(t)
			}
			srv := objectStore(t, h)
			c := newFakeCloud(t).client(true, nil, func(cfg *httpadapter.Config) { cfg.Timeout = tt.timeout })
			var err error
			if tt.download {
				w := tt.w
				if w == nil {
					w = io.Discard
				}
				_, err = c.Download(t.Context(), signed(srv, "x.bin"), nil, w)
			} else {
				body, length := tt.body, tt.length
				if body == nil {
					body, length = strings.NewReader("content"), 7
				}
				_, err = c.Upload(t.Context(), signed(srv, "x.bin"), nil, body, ports.ObjectMeta{Length: length})
			}
			want := strings.ReplaceAll(tt.want, "127.0.0.1:PORT", strings.TrimPrefix(srv.URL, "https://"))
			var ce *ports.CloudError
			if !errors.As(err, &ce) || err.Error() != want {
				t.Fatalf("error = %v (%T)\n want %s", err, err, want)
			}
			if ce.Permanent != tt.permanent || ce.RetryAfter != tt.retryAfter || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("Permanent %v, RetryAfter %s; want %v, %s, wrapping %v", ce.Permanent, ce.RetryAfter, tt.permanent, tt.retryAfter, tt.is)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error shows the URL's signature: %v", err)
			}
		})
	}
}

func TestStorageCallsEndWithTheirContext(t *testing.T) {
	srv := objectStore(t, hang(t))
	c := newFakeCloud(t).client(true, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Download(ctx, signed(srv, "x.bin"), nil, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("Download = %v, want a wrapped deadline error without the signature", err)
	}
	c.Close()
	_, err = c.Upload(t.Context(), signed(srv, "x.bin"), nil, strings.NewReader(""), ports.ObjectMeta{})
	if !errors.Is(err, ports.ErrClosed) || !ports.IsPermanent(err) {
		t.Errorf("Upload after Close = %v, want a permanent error wrapping ErrClosed", err)
	}
}

func TestUploadRefusesBadMetadata(t *testing.T) {
	c := newFakeCloud(t).client(true, nil)
	_, err := c.Upload(t.Context(), "https://127.0.0.1:1/storage/o/ep-1/x", nil, strings.NewReader(""),
		ports.ObjectMeta{Custom: map[string]string{"bad key": "v"}})
	if want := `upload storage object "ep-1/x": metadata key "bad key": expected letters, digits and - _ . only`; errText(err) != want || !ports.IsPermanent(err) {
		t.Errorf("error = %s\n want %s (permanent)", errText(err), want)
	}
}

func slicesEqual(a, b []string) bool { return reflect.DeepEqual(a, b) }
