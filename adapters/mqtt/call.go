package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/binary"
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

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// correlationBytes is the length of the random correlation data of a call.
const correlationBytes = 16

// waiter is a call waiting for its answer.
type waiter struct {
	path string
	ch   chan answer // buffered 1: the router never blocks
}

// answer is what the cloud published for a call.
type answer struct {
	payload []byte
	isError bool // it came on PATH/error
}

// call publishes body (QoS 1, with fresh correlation data) to
// iotcs/{id}/path on a connection for role r and returns the payload of the
// answer carrying the same correlation data. The publish and the wait
// together last at most Config.Timeout. An answer on PATH/error becomes the
// *ports.CloudError its error document describes (hint401 is added to a
// 401's message); no answer in time, a lost connection or a refused publish
// are transient errors; the caller's context ending is returned wrapped.
func (c *Client) call(ctx context.Context, op string, r role, path string, body []byte, hint401 string) ([]byte, error) {
	cn, err := c.conn(ctx, op, r)
	if err != nil {
		return nil, err
	}
	corr := make([]byte, correlationBytes)
	_, _ = rand.Read(corr) // never fails (crypto/rand)
	w := &waiter{path: path, ch: make(chan answer, 1)}
	c.mu.Lock()
	c.pending[string(corr)] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, string(corr))
		c.mu.Unlock()
	}()

	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	topic := cn.topic(path)
	if err := c.publish(cctx, ctx, op, cn, &paho.Publish{QoS: 1, Topic: topic, Payload: body,
		Properties: &paho.PublishProperties{CorrelationData: corr}}); err != nil {
		return nil, err
	}
	var a answer
	select {
	case a = <-w.ch:
	case <-cctx.Done():
		select {
		case a = <-w.ch: // it did come: take it
		default:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", op, ctx.Err())
			}
			c.log.Debug("cloud call without answer", slog.String("op", op), slog.String("topic", topic),
				slog.Duration("duration", time.Since(start)))
			return nil, &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("no answer from %s within %s", c.server, c.timeout)}
		}
	case <-cn.done:
		select {
		case a = <-w.ch:
		default:
			return nil, c.lostError(op)
		}
	case <-c.closing:
		select {
		case a = <-w.ch:
		default:
			return nil, c.lostError(op)
		}
	}
	c.log.Debug("cloud call", slog.String("op", op), slog.String("topic", topic), slog.Bool("error", a.isError),
		slog.Int("bytes", len(a.payload)), slog.Duration("duration", time.Since(start)))
	if a.isError {
		return nil, errorAnswer(op, a.payload, hint401)
	}
	return a.payload, nil
}

// publish publishes p and waits for its PUBACK within cctx (ctx is the
// caller's, to tell its end from the call's timeout). It returns when the
// connection ends or the client closes, too: paho forgets, without an
// answer, the publishes in flight on a lost clean-start session, so its
// Publish would wait out the whole timeout.
func (c *Client) publish(cctx, ctx context.Context, op string, cn *conn, p *paho.Publish) error {
	pctx, stop := c.bound(cctx, cn)
	pr, err := cn.pc.Publish(pctx, p)
	stop()
	if err == nil {
		if pr != nil && pr.ReasonCode == packets.PubackNoMatchingSubscribers {
			c.log.Debug("no subscriber took the publish: is the cloud listening?", slog.String("topic", p.Topic))
		}
		return nil
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", op, ctx.Err())
	case pr != nil && pr.ReasonCode == packets.PubackNotAuthorized:
		return &ports.CloudError{Op: op, Permanent: true, Index: -1,
			Err: fmt.Errorf("the broker refused the publish to %s: %s; a device may publish only under iotcs/{its id}/ (%w)", p.Topic, reasonText(pr.ReasonCode), ports.ErrUnauthorized)}
	case pr != nil && (pr.ReasonCode == packets.PubackTopicNameInvalid || pr.ReasonCode == packets.PubackPayloadFormatInvalid || pr.ReasonCode == 0x95):
		return &ports.CloudError{Op: op, Permanent: true, Index: -1,
			Err: fmt.Errorf("the broker refused the publish to %s: %s", p.Topic, reasonText(pr.ReasonCode))}
	case pr != nil:
		return &ports.CloudError{Op: op, Index: -1,
			Err: fmt.Errorf("the broker refused the publish to %s: %s", p.Topic, reasonText(pr.ReasonCode))}
	case c.isClosing() || !cn.alive():
		return c.lostError(op)
	case cctx.Err() != nil:
		return &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("no answer from %s within %s", c.server, c.timeout)}
	default:
		return &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("publish to %s: %w", c.server, err)}
	}
}

// bound returns a context that also ends when cn ends or the client
// closes. stop releases its watcher and waits for it.
func (c *Client) bound(ctx context.Context, cn *conn) (bctx context.Context, stop func()) {
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-cn.done:
		case <-c.closing:
		case <-bctx.Done():
		}
		cancel()
	}()
	return bctx, func() {
		cancel()
		<-done
	}
}

func (c *Client) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// lostError reports a call whose connection ended before its answer came:
// transient, since whether the cloud took the publish is unknown.
func (c *Client) lostError(op string) error {
	if c.isClosing() {
		return &ports.CloudError{Op: op, Index: -1,
			Err: fmt.Errorf("the mqtt transport was closed while the call waited for its answer (%w)", ports.ErrClosed)}
	}
	return &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("the connection to %s was lost before the answer came", c.server)}
}

// router returns the handler of what the broker delivers on cn. It runs on
// paho's goroutine and never blocks: answers go to their waiters, pushes
// to the push buffer, notices to the client's state.
func (c *Client) router(cn *conn) func(paho.PublishReceived) (bool, error) {
	prefix := subscribeRoot + cn.id + "/"
	return func(pr paho.PublishReceived) (bool, error) {
		p := pr.Packet
		path, ok := strings.CutPrefix(p.Topic, prefix)
		if !ok {
			c.log.Debug("ignoring a publish outside the device's topics", slog.String("topic", p.Topic))
			return true, nil
		}
		base, isError := strings.CutSuffix(path, errorSuffix)
		var corr []byte
		if p.Properties != nil {
			corr = p.Properties.CorrelationData
		}
		if base == pathAcceptBytes && !isError {
			c.notice(p.Payload)
			return true, nil
		}
		if len(corr) > 0 {
			c.mu.Lock()
			w := c.pending[string(corr)]
			c.mu.Unlock()
			if w != nil && w.path == base {
				select {
				case w.ch <- answer{payload: p.Payload, isError: isError}:
				default: // a duplicate (QoS 1 may deliver twice)
				}
				return true, nil
			}
			if base == pathMessages && !isError {
				// A late answer still carries requests: keep them.
				c.log.Debug("an answer came after its call ended; keeping its requests", slog.String("topic", p.Topic))
				c.push(p.Payload)
				return true, nil
			}
			c.log.Debug("ignoring an answer no call waits for", slog.String("topic", p.Topic))
			return true, nil
		}
		if base == pathMessages && !isError {
			c.push(p.Payload)
			return true, nil
		}
		c.log.Debug("ignoring a publish without correlation data", slog.String("topic", p.Topic))
		return true, nil
	}
}

// push buffers the requests of a push. Beyond Config.PushBuffer the oldest
// are dropped, with a warning; the newest are always kept.
func (c *Client) push(payload []byte) {
	msgs, err := message.Decode(payload)
	if err != nil {
		c.log.Warn("ignoring a push that is not a JSON array of messages", slog.Int("bytes", len(payload)), slog.Any("error", err))
		return
	}
	if len(msgs) == 0 {
		return
	}
	c.mu.Lock()
	for _, m := range msgs {
		size := max(message.EncodedSize(&m), 0)
		c.pushes = append(c.pushes, pushed{msg: m, size: size})
		c.pushBytes += size
	}
	dropped := 0
	for c.pushBytes > c.pushLimit && len(c.pushes) > 1 {
		c.pushBytes -= c.pushes[0].size
		c.pushes[0] = pushed{}
		c.pushes = c.pushes[1:]
		dropped++
	}
	c.ringLocked()
	held, limit := len(c.pushes), c.pushLimit
	c.mu.Unlock()
	if dropped > 0 {
		c.log.Warn("the push buffer is full: dropped the oldest pushed requests; call Exchange more often or raise PushBuffer",
			slog.Int("dropped", dropped), slog.Int("held", held), slog.Int("limit_bytes", limit))
	}
}

// notice takes the cloud's min-accept-bytes: a pending request is larger
// than the free space the device offered.
func (c *Client) notice(payload []byte) {
	if len(payload) != 4 {
		c.log.Warn("ignoring a min-accept-bytes notice that is not 4 bytes", slog.Int("bytes", len(payload)))
		return
	}
	n := int(binary.BigEndian.Uint32(payload))
	c.mu.Lock()
	c.minAccept = n
	c.ringLocked()
	c.mu.Unlock()
	c.log.Debug("the cloud holds a request larger than the offered space", slog.Int("min_accept_bytes", n))
}

// ringLocked wakes whoever waits for a push or a notice. c.mu is held.
func (c *Client) ringLocked() {
	close(c.bell)
	c.bell = make(chan struct{})
}

// errorDoc is the error document of PATH/error answers (the body of the
// reference cloud's HTTPS error answers).
type errorDoc struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Index   *int   `json:"index"`
	Field   string `json:"field"`
}

// errorAnswer maps an error document as the HTTPS transport maps statuses:
// 401 wraps ports.ErrUnauthorized and 404 ports.ErrNotFound, both
// permanent; 408, 429, 5xx and a document without a 4xx status are
// transient; every other 4xx is permanent. Index is the message the cloud
// named, or -1.
func errorAnswer(op string, payload []byte, hint401 string) *ports.CloudError {
	var e errorDoc
	if err := json.Unmarshal(payload, &e); err != nil {
		return &ports.CloudError{Op: op, Index: -1,
			Err: fmt.Errorf("the cloud answered with an error that is not an error document {\"status\",\"message\"}: %s", quoteShort(payload))}
	}
	msg := strings.TrimSpace(e.Message)
	if e.Field != "" && !strings.Contains(msg, e.Field) {
		if msg == "" {
			msg = "problem"
		}
		msg += fmt.Sprintf(" (field %q)", e.Field)
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
		if msg == "" {
			msg = "status " + strconv.Itoa(e.Status)
		}
	}
	ce := &ports.CloudError{Op: op, Status: e.Status, Index: -1}
	if e.Index != nil && *e.Index >= 0 {
		ce.Index = *e.Index
	}
	switch s := e.Status; {
	case s == http.StatusUnauthorized:
		ce.Permanent = true
		if hint401 != "" {
			msg += "; " + hint401
		}
		ce.Err = fmt.Errorf("%s (%w)", msg, ports.ErrUnauthorized)
	case s == http.StatusNotFound:
		ce.Permanent = true
		ce.Err = fmt.Errorf("%s (%w)", msg, ports.ErrNotFound)
	case s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s < 400, s >= 500:
		ce.Err = errors.New(msg)
	default:
		ce.Permanent = true
		ce.Err = errors.New(msg)
	}
	return ce
}

// quoteShort quotes b for an error: at most 200 bytes of printable text.
func quoteShort(b []byte) string {
	const limit = 200
	s := string(b)
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Sprintf("%d bytes of non-text", len(b))
	}
	if len(s) > limit {
		return strconv.Quote(strings.ToValidUTF8(s[:limit], "")) + "..."
	}
	return strconv.Quote(s)
}

// answerError reports an answer whose content is wrong: permanent, as over
// HTTPS (the cloud would answer the same again).
func answerError(op string, format string, args ...any) *ports.CloudError {
	return &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: fmt.Errorf(format, args...)}
}

// decodeJSON decodes an answer into v; an error says what it was expected
// to be.
func decodeJSON(op string, payload []byte, v any, want string) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return answerError(op, "the answer is not %s: %v", want, err)
	}
	return nil
}
