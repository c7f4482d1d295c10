package http

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotnode/iotnode/ports"
)

// Metadata header prefixes (protocol.md §7): custom metadata is sent as
// opc-meta-<key> (OCI object storage, the new style this client speaks);
// both prefixes are read back.
const (
	metaPrefixOCI     = "opc-meta-"
	metaPrefixClassic = "x-object-meta-"
)

// maxStorageErrorBody bounds what is read of an object store's error answer.
const maxStorageErrorBody = 64 << 10

// defaultContentType is the MIME type of an object without one (§7).
const defaultContentType = "application/octet-stream"

// Upload sends body to the pre-authorized object URL rawURL (from
// StorageURL with method PUT): an HTTP PUT with the headers of the grant,
// Content-Type (default application/octet-stream), Content-Encoding when
// meta has one and the custom metadata as opc-meta-<key> headers. The body
// is streamed as it is read: with a Content-Length when meta.Length >= 0,
// chunked (or as HTTP/2 frames without a length) when it is -1. A grant
// header wins over the client's own (a signature may cover it), except
// Content-Length, Host and Transfer-Encoding, which net/http controls.
//
// It makes one attempt over the client's HTTP transport (the TLS trust
// anchors of the provisioning file; no bearer token: the URL carries the
// authorization). The call is bounded by ctx and by the client's Timeout
// as a limit on silence: it fails when no byte moved for that long, so
// large objects are not cut short. Errors are *ports.CloudError, Permanent
// per the store's status as for cloud calls (408, 429 and 5xx transient;
// 401 wraps ports.ErrUnauthorized, 404 ports.ErrNotFound); no answer is
// transient; a body that fails to read, or ends early or runs long against
// meta.Length, is permanent; a context error is wrapped as it is. Error
// texts name the object, never the URL's signature. It returns the stored
// metadata: meta with Length the bytes sent and LastModified from the
// answer (zero when it had none).
func (c *Client) Upload(ctx context.Context, rawURL string, headers map[string]string, body io.Reader, meta ports.ObjectMeta) (ports.ObjectMeta, error) {
	label, host := objectLabel(rawURL)
	op := "upload storage object " + label
	switch {
	case c.closed.Load():
		return ports.ObjectMeta{}, permanent(op, fmt.Errorf("the https transport is closed (%w)", ports.ErrClosed))
	case body == nil:
		return ports.ObjectMeta{}, permanent(op, errors.New("the body is nil; expected the object's content"))
	case meta.Length < -1:
		return ports.ObjectMeta{}, permanent(op, fmt.Errorf("length %d; expected the content's size, or -1 when unknown", meta.Length))
	}
	if err := checkMetadata(meta.Custom); err != nil {
		return ports.ObjectMeta{}, permanent(op, err)
	}
	meta.ContentType = cmp.Or(meta.ContentType, defaultContentType)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(c.timeout, cancel)
	defer wd.stop()
	src := &countingBody{r: body, want: meta.Length, wd: wd}
	req, err := http.NewRequestWithContext(cctx, http.MethodPut, rawURL, src)
	if err != nil {
		return ports.ObjectMeta{}, permanent(op, fmt.Errorf("the storage URL of host %s is not usable: %v", host, unwrapURLError(err)))
	}
	switch meta.Length {
	case -1:
		req.ContentLength = -1
	case 0:
		req.ContentLength, req.Body = 0, http.NoBody
	default:
		req.ContentLength = meta.Length
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Content-Type", meta.ContentType)
	if meta.ContentEncoding != "" {
		req.Header.Set("Content-Encoding", meta.ContentEncoding)
	}
	for k, v := range meta.Custom {
		req.Header.Set(metaPrefixOCI+strings.ToLower(k), v)
	}
	setGrantHeaders(req, headers)

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return ports.ObjectMeta{}, c.storageTransportError(ctx, op, host, wd, src.failure(), err)
	}
	defer resp.Body.Close()
	if err := src.failure(); err != nil { // the store answered before the whole body was read
		return ports.ObjectMeta{}, permanent(op, err)
	}
	if rep := readReply(resp); !rep.ok() {
		return ports.ObjectMeta{}, c.statusError(op, rep, "")
	}
	c.log.Debug("storage upload", slog.String("op", op), slog.Int("status", resp.StatusCode),
		slog.Int64("bytes", src.n.Load()), slog.Duration("duration", time.Since(start)))
	out := meta
	out.Length = src.n.Load()
	out.LastModified = parseHTTPTime(resp.Header.Get("Last-Modified"))
	return out, nil
}

// Download writes the object at the pre-authorized URL rawURL (from
// StorageURL with method GET) to w as it arrives, and returns its
// metadata: Content-Type, Content-Encoding, Last-Modified and the custom
// metadata of opc-meta-* and X-Object-Meta-* headers (keys in lower case,
// without the prefix); Length is the bytes written. The content is written
// as the store sent it: a gzip-encoded object stays encoded.
//
// It makes one attempt, bounded like Upload. Errors are *ports.CloudError:
// Permanent per status as for Upload; a failure to write w is permanent; no
// answer, or a body that breaks off, is transient (w may then hold part of
// the content: the caller starts again from an empty writer); a context
// error is wrapped as it is.
func (c *Client) Download(ctx context.Context, rawURL string, headers map[string]string, w io.Writer) (ports.ObjectMeta, error) {
	label, host := objectLabel(rawURL)
	op := "download storage object " + label
	switch {
	case c.closed.Load():
		return ports.ObjectMeta{}, permanent(op, fmt.Errorf("the https transport is closed (%w)", ports.ErrClosed))
	case w == nil:
		return ports.ObjectMeta{}, permanent(op, errors.New("the writer is nil"))
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(c.timeout, cancel)
	defer wd.stop()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return ports.ObjectMeta{}, permanent(op, fmt.Errorf("the storage URL of host %s is not usable: %v", host, unwrapURLError(err)))
	}
	req.Header.Set("User-Agent", c.userAgent)
	// An explicit Accept-Encoding keeps net/http from decoding gzip on its
	// own: the object is stored and returned byte for byte.
	req.Header.Set("Accept-Encoding", "identity")
	setGrantHeaders(req, headers)

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return ports.ObjectMeta{}, c.storageTransportError(ctx, op, host, wd, nil, err)
	}
	defer resp.Body.Close()
	if !(resp.StatusCode >= 200 && resp.StatusCode < 300) {
		return ports.ObjectMeta{}, c.statusError(op, readReply(resp), "")
	}
	meta := ports.ObjectMeta{
		ContentType:     resp.Header.Get("Content-Type"),
		ContentEncoding: resp.Header.Get("Content-Encoding"),
		Length:          -1,
		LastModified:    parseHTTPTime(resp.Header.Get("Last-Modified")),
		Custom:          customMetadata(resp.Header),
	}
	dst := &sink{w: w}
	buf := make([]byte, 32<<10)
	n, err := io.CopyBuffer(dst, &progressReader{r: resp.Body, wd: wd}, buf)
	if err != nil {
		if dst.err != nil {
			return ports.ObjectMeta{}, permanent(op, fmt.Errorf("write the content after %d bytes: %w", n, dst.err))
		}
		if ctx.Err() != nil {
			return ports.ObjectMeta{}, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if wd.fired() {
			return ports.ObjectMeta{}, transient(op, fmt.Errorf("the download from %s stalled after %d bytes: nothing arrived for %s", host, n, c.timeout))
		}
		return ports.ObjectMeta{}, transient(op, fmt.Errorf("the download from %s broke off after %d bytes: %v", host, n, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return ports.ObjectMeta{}, transient(op, fmt.Errorf("the download from %s ended after %d of %d bytes", host, n, resp.ContentLength))
	}
	c.log.Debug("storage download", slog.String("op", op), slog.Int("status", resp.StatusCode),
		slog.Int64("bytes", n), slog.Duration("duration", time.Since(start)))
	meta.Length = n
	return meta, nil
}

// storageTransportError maps an object-store exchange that got no answer.
// The caller's context wins; then a failure of the content (permanent);
// then the watchdog; everything else is transient, as for cloud calls.
func (c *Client) storageTransportError(ctx context.Context, op, host string, wd *watchdog, bodyErr, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if bodyErr != nil {
		return permanent(op, bodyErr)
	}
	err = unwrapURLError(err) // *url.Error quotes the URL, signature included
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	switch {
	case wd.fired():
		err = fmt.Errorf("no progress with %s for %s", host, c.timeout)
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		err = fmt.Errorf("the certificate of %s is not trusted: %v; expected a certificate for this host that chains to a trust anchor of the provisioning file", host, certReason(err))
	}
	return transient(op, err)
}

func permanent(op string, err error) *ports.CloudError {
	return &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
}

func transient(op string, err error) *ports.CloudError {
	return &ports.CloudError{Op: op, Index: -1, Err: err}
}

// unwrapURLError drops the *url.Error around err: its text quotes the
// whole URL, and a storage URL's query is a credential.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// objectLabel names the object of a storage URL for errors and logs without
// its credentials: the quoted object name after "/o/" (the reference cloud's
// /storage/o/<name>, OCI's /n/<ns>/b/<bucket>/o/<name>), else the host.
func objectLabel(rawURL string) (label, host string) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(invalid storage URL)", "(unknown host)"
	}
	if _, name, ok := strings.Cut(u.Path, "/o/"); ok && name != "" {
		return fmt.Sprintf("%q", name), u.Host
	}
	return "at " + u.Host, u.Host
}

// setGrantHeaders copies the headers of a storage grant onto req.
func setGrantHeaders(req *http.Request, headers map[string]string) {
	for k, v := range headers {
		switch strings.ToLower(k) {
		case "content-length", "host", "transfer-encoding", "(request-target)":
			continue
		}
		req.Header.Set(k, v)
	}
}

// checkMetadata refuses custom metadata that cannot travel as a header.
func checkMetadata(custom map[string]string) error {
	var errs []error
	for k, v := range custom {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return !isTokenChar(r) }) {
			errs = append(errs, fmt.Errorf("metadata key %q: expected letters, digits and - _ . only", k))
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("metadata %q: the value contains a control character", k))
		}
	}
	return errors.Join(errs...)
}

func isTokenChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
}

// customMetadata returns the opc-meta-* and X-Object-Meta-* headers of h by
// lower-case key without the prefix, or nil.
func customMetadata(h http.Header) map[string]string {
	var out map[string]string
	for k, v := range h {
		l := strings.ToLower(k)
		key, ok := strings.CutPrefix(l, metaPrefixOCI)
		if !ok {
			key, ok = strings.CutPrefix(l, metaPrefixClassic)
		}
		if !ok || key == "" || len(v) == 0 {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[key] = v[0]
	}
	return out
}

// readReply reads a bounded part of an answer's body for its status error.
func readReply(resp *http.Response) reply {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxStorageErrorBody))
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

func parseHTTPTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := http.ParseTime(s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// watchdog cancels a transfer when no byte moved for d: a bound on silence
// rather than on the whole transfer, which may rightly take long.
type watchdog struct {
	d     time.Duration
	t     *time.Timer
	flag  atomic.Bool
	abort context.CancelFunc
}

func newWatchdog(d time.Duration, abort context.CancelFunc) *watchdog {
	w := &watchdog{d: d, abort: abort}
	w.t = time.AfterFunc(d, func() {
		w.flag.Store(true)
		w.abort()
	})
	return w
}

// kick records progress.
func (w *watchdog) kick() { w.t.Reset(w.d) }

func (w *watchdog) stop()       { w.t.Stop() }
func (w *watchdog) fired() bool { return w.flag.Load() }

// countingBody is an upload body: it counts what was read, records
// progress, holds the content to want bytes (-1: any) and keeps the
// content's own read error apart from the network's.
type countingBody struct {
	r    io.Reader
	want int64
	wd   *watchdog
	n    atomic.Int64 // read by the caller after net/http's goroutine wrote it

	mu  sync.Mutex
	err error
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	total := b.n.Add(int64(n))
	if n > 0 {
		b.wd.kick()
	}
	switch {
	case b.want >= 0 && total > b.want:
		return n, b.fail(fmt.Errorf("the content is longer than the %d bytes announced", b.want))
	case err == io.EOF && b.want >= 0 && total < b.want:
		return n, b.fail(fmt.Errorf("the content ended after %d bytes, %d were announced", total, b.want))
	case err != nil && err != io.EOF:
		return n, b.fail(fmt.Errorf("read the content after %d bytes: %w", total, err))
	}
	return n, err
}

func (b *countingBody) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *countingBody) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// progressReader kicks the watchdog for every chunk read.
type progressReader struct {
	r  io.Reader
	wd *watchdog
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.wd.kick()
	}
	return n, err
}

// sink keeps the writer's own error apart from the network's.
type sink struct {
	w   io.Writer
	err error
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		s.err = err
	}
	return n, err
}

var _ ports.Storage = (*Client)(nil)
