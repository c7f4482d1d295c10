package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// Exchange sends msgs and returns what the cloud has for the device
// (docs/mqtt.md, topic iotcs/{id}/messages), connected as the endpoint ID.
//
//   - acceptBytes > 0 that differs from the last value published on this
//     connection is published first on messages/acceptBytes (4-byte big
//     endian, QoS 1); the cloud pushes requests only while they fit. 0 (the
//     transmitter's "no opinion") publishes nothing. An unchanged value is
//     published again, to keep the device present through a bridge, by an
//     Exchange without msgs (the receiver's poll, with or without wait)
//     once Config.PresenceRefresh has passed since it was last published.
//   - With msgs, the compact JSON array is published on messages with fresh
//     correlation data, and the call returns when the answer with that
//     correlation data came: a nil error means the cloud stored every
//     message. The answer's requests are returned, followed by any pushed
//     ones.
//   - Without msgs nothing is published: requests the cloud pushed (on
//     devices/{id}/messages without correlation data) since the last
//     Exchange are returned at once; when there are none and wait > 0, the
//     call waits up to wait for a push, like a long poll, and returns
//     (nil, nil) when none came.
//
// Errors: an error answer (messages/error) is a *ports.CloudError with the
// cloud's status and the index of the message it rejected (permanent for a
// 4xx but 401, 408 and 429; a 401 wraps ports.ErrUnauthorized); no answer
// within Config.Timeout, a lost connection, an answer that is not a message
// array and a broker's refusal are transient (sending again is safe: the
// cloud drops replays by clientId). A poll (no msgs) whose offered space is
// smaller than a request the cloud holds (its min-accept-bytes notice) is a
// transient error saying how large the request buffer must be.
func (c *Client) Exchange(ctx context.Context, msgs []message.Message, acceptBytes int, wait time.Duration) ([]message.Message, error) {
	const op = "exchange messages"
	if acceptBytes < 0 || int64(acceptBytes) > math.MaxInt32 {
		// The cloud reads the 4 bytes as a signed integer.
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1,
			Err: fmt.Errorf("acceptBytes is %d; expected the free space of the request buffer, 0 to %d", acceptBytes, math.MaxInt32)}
	}
	var body []byte
	if len(msgs) > 0 {
		var err error
		body, err = message.Encode(msgs)
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
	}
	cn, err := c.conn(ctx, op, roleEndpoint)
	if err != nil {
		return nil, err
	}
	if acceptBytes > 0 {
		// Only the receiver polls (without msgs) with acceptBytes > 0.
		if err := c.offer(ctx, op, cn, acceptBytes, len(msgs) == 0); err != nil {
			return nil, err
		}
	}
	if len(msgs) > 0 {
		payload, err := c.call(ctx, op, roleEndpoint, pathMessages, body, "")
		if err != nil {
			return nil, err
		}
		in, err := message.Decode(payload)
		if err != nil {
			return nil, &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("the answer is not a JSON array of messages: %w", err)}
		}
		return append(in, c.takePushes()...), nil
	}
	return c.awaitPush(ctx, op, cn, acceptBytes, wait)
}

// offer publishes acceptBytes on messages/acceptBytes when it differs from
// the last value published on cn or, with refresh, when that was published
// Config.PresenceRefresh ago or more (the presence a bridge grants lasts 10
// minutes after each publish). The cloud answers it only when a request is
// larger (a notice, see Client.notice), so only the PUBACK is awaited.
func (c *Client) offer(ctx context.Context, op string, cn *conn, acceptBytes int, refresh bool) error {
	cn.acceptMu.Lock()
	defer cn.acceptMu.Unlock()
	now := c.clock.Now()
	stale := refresh && c.refresh > 0 && now.Sub(cn.acceptAt) >= c.refresh
	if cn.accept == acceptBytes && !stale {
		return nil
	}
	payload := binary.BigEndian.AppendUint32(nil, uint32(acceptBytes))
	if cn.accept != acceptBytes {
		// The cloud says again if this is still too small (once per value:
		// a refresh keeps the notice).
		c.mu.Lock()
		c.minAccept = 0
		c.mu.Unlock()
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.publish(cctx, ctx, op, cn, &paho.Publish{QoS: 1, Topic: cn.topic(pathAcceptBytes), Payload: payload}); err != nil {
		return err
	}
	c.log.Debug("offered space for requests", slog.Int("accept_bytes", acceptBytes), slog.Bool("refresh", cn.accept == acceptBytes))
	cn.accept, cn.acceptAt = acceptBytes, now
	return nil
}

// awaitPush returns the buffered pushes, waiting up to wait for one.
func (c *Client) awaitPush(ctx context.Context, op string, cn *conn, acceptBytes int, wait time.Duration) ([]message.Message, error) {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		c.mu.Lock()
		in := c.takePushesLocked()
		minAccept, bell := c.minAccept, c.bell
		c.mu.Unlock()
		switch {
		case len(in) > 0:
			return in, nil
		case acceptBytes > 0 && minAccept > acceptBytes:
			return nil, &ports.CloudError{Op: op, Index: -1,
				Err: fmt.Errorf("the request buffer is too small: the cloud holds a request of %d bytes but acceptBytes is %d; make the request buffer at least %d bytes", minAccept, acceptBytes, minAccept)}
		case timeout == nil:
			return nil, nil
		}
		select {
		case <-bell:
		case <-timeout:
			return nil, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		case <-cn.done:
			if in := c.takePushes(); len(in) > 0 {
				return in, nil
			}
			return nil, c.lostError(op)
		case <-c.closing:
			return nil, c.lostError(op)
		}
	}
}

func (c *Client) takePushes() []message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takePushesLocked()
}

func (c *Client) takePushesLocked() []message.Message {
	if len(c.pushes) == 0 {
		return nil
	}
	out := make([]message.Message, len(c.pushes))
	for i, p := range c.pushes {
		out[i] = p.msg
	}
	c.pushes, c.pushBytes = nil, 0
	return out
}
