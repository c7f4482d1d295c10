package http

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// Exchange sends msgs and returns what the cloud has for the device
// (protocol.md §3a): POST messages?acceptBytes=N with the compact JSON array
// of msgs ("[]" to just poll).
//
// Long polling: when wait > 0 and acceptBytes > 0 (Oracle's Java client
// sends iot.sync only then) the query adds iot.sync&iot.timeout=S, S being
// wait rounded up to whole seconds, and the call may last S seconds plus
// Config.LongPollOffset; when it runs out without an answer and msgs is empty,
// that is the normal "no messages" (nil, nil). With messages to send, the
// same timeout is a transient error: whether the cloud took them is unknown,
// and sending them again is safe (the cloud drops replays by clientId).
// Otherwise the call lasts at most Config.Timeout. An answer that arrives
// as ctx or the timeout ends is still taken: the cloud did answer.
//
// Answers: 200 or 202 (any 2xx) with a message array, empty or not. An empty
// body with X-min-acceptBytes is a transient error saying the request buffer
// is too small. Other failures follow statusError: 401 after one token
// refresh wraps ports.ErrUnauthorized; other 4xx but 408 and 429 are
// permanent and carry the cloud's message and the index of the message it
// rejected; 408, 429, 5xx, timeouts and network errors are transient;
// RetryAfter comes from Retry-After. An answer that is not a message array
// is a transient error too, so that no message is dropped for a cloud's
// fault.
func (c *Client) Exchange(ctx context.Context, msgs []message.Message, acceptBytes int, wait time.Duration) ([]message.Message, error) {
	const op = "exchange messages"
	if acceptBytes < 0 {
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1,
			Err: fmt.Errorf("acceptBytes is %d; expected the free space of the request buffer, 0 or more", acceptBytes)}
	}
	body, err := message.Encode(msgs)
	if err != nil {
		index := -1
		for i := range msgs {
			if message.EncodedSize(&msgs[i]) < 0 {
				index = i
				break
			}
		}
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: index, Err: err}
	}
	r := request{op: op, method: http.MethodPost, path: apiRoot + "/messages", body: body,
		query: "acceptBytes=" + strconv.Itoa(acceptBytes), scope: scopeDefault, timeout: c.timeout}
	if wait > 0 && acceptBytes > 0 {
		secs := (wait + time.Second - 1) / time.Second
		r.query += "&iot.sync&iot.timeout=" + strconv.FormatInt(int64(secs), 10)
		r.timeout = secs*time.Second + c.longPollOffset
		r.longPoll = true
	}
	rep, err := c.do(ctx, r)
	if errors.Is(err, errLongPollTimeout) {
		if len(msgs) == 0 {
			return nil, nil
		}
		return nil, &ports.CloudError{Op: op, Index: -1,
			Err: fmt.Errorf("no answer from %s within the long poll's %s; the messages may not have arrived", c.base, r.timeout)}
	}
	if err != nil {
		return nil, err
	}
	if !rep.ok() {
		return nil, c.statusError(op, rep, "")
	}
	if len(bytes.TrimSpace(rep.body)) == 0 {
		if min := strings.TrimSpace(rep.header.Get("X-min-acceptBytes")); min != "" {
			return nil, &ports.CloudError{Op: op, Status: rep.status, Index: -1,
				Err: fmt.Errorf("the request buffer is too small: the cloud holds a request of %s bytes but acceptBytes is %d; make the request buffer at least %s bytes", min, acceptBytes, min)}
		}
		return nil, nil
	}
	in, err := message.Decode(rep.body)
	if err != nil {
		return nil, &ports.CloudError{Op: op, Status: rep.status, Index: -1,
			Err: fmt.Errorf("the answer is not a JSON array of messages: %w", err)}
	}
	return in, nil
}
