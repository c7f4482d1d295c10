package device

import "sync/atomic"

// Stats are the message dispatcher's counters since the device was built or
// the cloud reset them (message_dispatcher reset resource).
type Stats struct {
	// Queued counts messages accepted into the outbox.
	Queued uint64
	// Sent counts messages the cloud accepted.
	Sent uint64
	// Received counts messages the cloud sent to the device.
	Received uint64
	// Retried counts messages sent again after a failed attempt (a message
	// sent three times counts two).
	Retried uint64
	// Dropped counts messages the outbox dropped to make room (never
	// GUARANTEED_DELIVERY ones), and requests dropped at Close.
	Dropped uint64
	// DeadLettered counts messages the cloud refused for good; each was
	// reported through OnError of its virtual device (or logged).
	DeadLettered uint64
	// BytesSent and BytesReceived count encoded message bytes.
	BytesSent, BytesReceived uint64
	// ProtocolErrors counts failed exchanges with the cloud.
	ProtocolErrors uint64
}

// counters are the live Stats.
type counters struct {
	queued, sent, received, retried, dropped, deadLettered atomic.Uint64
	bytesSent, bytesReceived, protocolErrors               atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Queued:         c.queued.Load(),
		Sent:           c.sent.Load(),
		Received:       c.received.Load(),
		Retried:        c.retried.Load(),
		Dropped:        c.dropped.Load(),
		DeadLettered:   c.deadLettered.Load(),
		BytesSent:      c.bytesSent.Load(),
		BytesReceived:  c.bytesReceived.Load(),
		ProtocolErrors: c.protocolErrors.Load(),
	}
}

func (c *counters) reset() {
	for _, a := range []*atomic.Uint64{&c.queued, &c.sent, &c.received, &c.retried, &c.dropped,
		&c.deadLettered, &c.bytesSent, &c.bytesReceived, &c.protocolErrors} {
		a.Store(0)
	}
}
