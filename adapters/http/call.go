package http

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-resty/resty/v2"

	"github.com/iotnode/iotnode/ports"
)

// REST paths (protocol.md §1–§5, §7).
const (
	apiRoot        = "/iot/api/v2"
	privateAPIRoot = "/iot/privateapi/v2"
	tokenPath      = apiRoot + "/oauth2/token"

	contentJSON = "application/json"
	contentForm = "application/x-www-form-urlencoded"
)

// request is one HTTP call to the cloud.
type request struct {
	op     string // what the caller was doing, for errors: "exchange messages"
	method string
	path   string // from the root, e.g. "/iot/api/v2/messages"
	query  string // raw query without "?", may be empty
	body   []byte // nil for none
	form   bool   // body is a form (the token call), not JSON
	// scope is the token scope of a bearer call (made by do).
	scope string
	// timeout bounds the call; longPoll marks a long poll, whose timeout is
	// a normal outcome.
	timeout  time.Duration
	longPoll bool
}

// reply is the cloud's answer, whatever its status.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) ok() bool { return r.status >= 200 && r.status < 300 }

// errLongPollTimeout: a long poll ran out its time without an answer.
var errLongPollTimeout = errors.New("long poll timed out")

// do makes a bearer call: it gets a token for the request's scope, sends the
// request, and on a 401 drops the token, gets a new one and sends the
// request once more (the only retry of the adapter). It returns the reply
// whatever its status (a second 401 included) or an error when there was
// none: a *ports.CloudError, a wrapped context error or errLongPollTimeout.
func (c *Client) do(ctx context.Context, r request) (reply, error) {
	if c.closed.Load() {
		return reply{}, &ports.CloudError{Op: r.op, Permanent: true, Index: -1, Err: fmt.Errorf("the https transport is closed (%w)", ports.ErrClosed)}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, r.op, r.scope)
		if err != nil {
			return reply{}, err
		}
		rep, err := c.send(ctx, r, tok)
		if err != nil || rep.status != http.StatusUnauthorized || attempt > 0 {
			return rep, err
		}
		c.log.Debug("the cloud refused the access token: getting a new one", slog.String("op", r.op), slog.String("scope", scopeName(r.scope)))
		c.dropToken(r.scope, tok)
	}
}

// send makes one HTTP exchange. tok is nil for the token call.
func (c *Client) send(ctx context.Context, r request, tok *token) (reply, error) {
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req := c.rc.R().SetContext(cctx).
		SetHeader("Accept", contentJSON).
		SetHeader("User-Agent", c.userAgent)
	switch {
	case r.form:
		req.SetHeader("Content-Type", contentForm)
	default:
		req.SetHeader("Content-Type", contentJSON)
	}
	if r.body != nil {
		req.SetBody(r.body)
	}
	if tok != nil {
		req.SetHeader("Authorization", tok.authorization)
		if r.scope == scopeActivation {
			req.SetHeader("X-ActivationId", tok.id)
		} else {
			req.SetHeader("X-EndpointId", tok.id)
		}
	}
	u := c.base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	start := time.Now()
	resp, err := req.Execute(r.method, u)
	if err != nil {
		c.log.Debug("cloud call failed", slog.String("op", r.op), slog.String("method", r.method), slog.String("path", r.path),
			slog.Duration("duration", time.Since(start)), slog.Any("error", err))
		return reply{}, c.transportError(ctx, r, err)
	}
	rep := reply{status: resp.StatusCode(), header: resp.Header(), body: resp.Body()}
	c.log.Debug("cloud call", slog.String("op", r.op), slog.String("method", r.method), slog.String("path", r.path),
		slog.Int("status", rep.status), slog.Int("bytes", len(rep.body)), slog.Duration("duration", time.Since(start)))
	return rep, nil
}

// transportError maps a call that got no answer. The caller's context wins;
// then our own deadline (a normal end of a long poll); every other failure
// is transient: the network, the cloud or its certificate may be fixed
// while the dispatcher retries, and nothing acknowledged may be dropped.
func (c *Client) transportError(ctx context.Context, r request, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", r.op, ctx.Err())
	}
	ce := &ports.CloudError{Op: r.op, Index: -1, Err: err}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		tlsAlert  tls.AlertError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		if r.longPoll {
			return errLongPollTimeout
		}
		ce.Err = fmt.Errorf("no answer from %s within %s", c.base, r.timeout)
	case errors.Is(err, resty.ErrResponseBodyTooLarge):
		ce.Err = fmt.Errorf("the answer from %s is larger than %d bytes", c.base, MaxAnswerBytes)
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		ce.Err = fmt.Errorf("the certificate of %s is not trusted: %v; expected a certificate for this host that chains to a trust anchor of the provisioning file", c.base, certReason(err))
	case errors.As(err, &recordErr):
		ce.Err = fmt.Errorf("%s did not answer with TLS: %v; check the server URI's scheme and port", c.base, err)
	case errors.As(err, &tlsAlert):
		ce.Err = fmt.Errorf("TLS with %s failed: %v; the server may not support TLS 1.2 or later", c.base, err)
	}
	return ce
}

// certReason is the innermost certificate error, without the URL prefix.
func certReason(err error) error {
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &verifyErr) {
		return verifyErr.Err
	}
	return err
}

// statusError maps a reply with a non-2xx status (protocol.md §3a):
// 401 wraps ports.ErrUnauthorized and 404 ports.ErrNotFound, both permanent;
// 408, 429 and 5xx are transient; every other status is permanent. The
// message and the message index come from an api.Error-shaped body when there
// is one; RetryAfter from the Retry-After header.
func (c *Client) statusError(op string, rep reply, hint401 string) *ports.CloudError {
	msg, index := errorBody(rep.status, rep.body)
	ce := &ports.CloudError{Op: op, Status: rep.status, Index: index, RetryAfter: c.retryAfter(rep.header)}
	switch s := rep.status; {
	case s == http.StatusUnauthorized:
		ce.Permanent = true
		if hint401 != "" {
			msg += "; " + hint401
		}
		ce.Err = fmt.Errorf("%s (%w)", msg, ports.ErrUnauthorized)
	case s == http.StatusNotFound:
		ce.Permanent = true
		ce.Err = fmt.Errorf("%s (%w)", msg, ports.ErrNotFound)
	case s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s >= 500:
		ce.Err = errors.New(msg)
	case s >= 300 && s < 400:
		ce.Permanent = true
		ce.Err = fmt.Errorf("the cloud redirects to %q; expected an answer at %s (check the server URI of the provisioning file)", rep.header.Get("Location"), c.base)
	default:
		ce.Permanent = true
		ce.Err = errors.New(msg)
	}
	return ce
}

// apiError is the body of the cloud's non-2xx answers (cloud/api.Error).
type apiError struct {
	Status      int    `json:"status"`
	Message     string `json:"message"`
	Index       *int   `json:"index"`
	Field       string `json:"field"`
	CurrentTime int64  `json:"currentTime"`
}

// errorBody returns the cloud's message for a failed call and the index of
// the message it names (-1 for none). A body that is not an api.Error is
// quoted when it is short text; otherwise the status text is used.
func errorBody(status int, body []byte) (msg string, index int) {
	index = -1
	var e apiError
	if json.Unmarshal(body, &e) == nil {
		if e.Index != nil && *e.Index >= 0 {
			index = *e.Index
		}
		msg = strings.TrimSpace(e.Message)
		if e.Field != "" && !strings.Contains(msg, e.Field) {
			if msg == "" {
				msg = "problem"
			}
			msg += fmt.Sprintf(" (field %q)", e.Field)
		}
	} else if text := strings.TrimSpace(string(body)); text != "" && utf8.ValidString(text) && !strings.ContainsFunc(text, isControl) {
		const max = 200
		if len(text) > max {
			text = strings.ToValidUTF8(text[:max], "") + "..."
		}
		msg = text
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
		if msg == "" {
			msg = "status " + strconv.Itoa(status)
		}
	}
	return msg, index
}

func isControl(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' }

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
// It returns 0 when there is none or it cannot be read.
func (c *Client) retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 || n > int64(24*time.Hour/time.Second) {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(c.clock.Now()); d > 0 {
		return d
	}
	return 0
}

// decodeJSON decodes the body of a 2xx reply into v; an error says what the
// body was expected to be.
func decodeJSON(op string, rep reply, v any, want string) error {
	dec := json.NewDecoder(bytes.NewReader(rep.body))
	if err := dec.Decode(v); err != nil {
		return &ports.CloudError{Op: op, Status: rep.status, Permanent: true, Index: -1,
			Err: fmt.Errorf("the answer is not %s: %v", want, err)}
	}
	return nil
}

// answerError reports a 2xx reply whose content is wrong.
func answerError(op string, rep reply, format string, args ...any) *ports.CloudError {
	return &ports.CloudError{Op: op, Status: rep.status, Permanent: true, Index: -1, Err: fmt.Errorf(format, args...)}
}

// shortError drops the Go struct dump that encoding/asn1 appends to its
// structure errors, which means nothing to a user.
func shortError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " ("); i > 0 && strings.HasPrefix(msg, "asn1: ") {
		msg = msg[:i]
	}
	return msg
}
