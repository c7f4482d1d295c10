package porttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// OutboxFactory makes a fresh, empty outbox bounded to maxBytes of encoded
// messages (0 = unbounded) for one subtest. The factory registers any
// cleanup with t.Cleanup.
type OutboxFactory func(t *testing.T, maxBytes int) ports.Outbox

// Msg returns a DATA message for tests with the given clientId, priority
// and reliability and a fixed payload of about 150 encoded bytes.
func Msg(clientID string, p message.Priority, r message.Reliability) message.Message {
	return message.Message{
		ClientID:    clientID,
		Source:      "0-AE",
		Priority:    p,
		Reliability: r,
		EventTime:   time.UnixMilli(1764201600000),
		Type:        message.TypeData,
		Data: &message.Data{
			Format: "urn:test:attributes",
			Fields: []message.Field{{Name: "v", Value: int64(1)}},
		},
	}
}

func ids(ms []message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ClientID
	}
	return out
}

func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// Outbox runs the ports.Outbox conformance suite.
func Outbox(t *testing.T, newOutbox OutboxFactory) {
	ctx := context.Background()
	low, high := message.PriorityLow, message.PriorityHighest
	g, be := message.GuaranteedDelivery, message.BestEffort

	t.Run("empty begin", func(t *testing.T) {
		o := newOutbox(t, 0)
		b, err := o.Begin(10, 0)
		if err != nil || len(b.Messages) != 0 {
			t.Fatalf("Begin on empty = %v, %v; want no messages, nil", ids(b.Messages), err)
		}
	})

	t.Run("priority first then fifo", func(t *testing.T) {
		o := newOutbox(t, 0)
		mustAdd(t, o, Msg("a", low, g), Msg("b", high, be), Msg("c", low, be), Msg("d", high, g))
		b := mustBegin(t, o, 10, 0)
		want := []string{"b", "d", "a", "c"}
		if fmt.Sprint(ids(b.Messages)) != fmt.Sprint(want) {
			t.Fatalf("order = %v, want %v", ids(b.Messages), want)
		}
	})

	t.Run("begin respects max and maxBytes", func(t *testing.T) {
		o := newOutbox(t, 0)
		m := Msg("x", low, g)
		size := message.EncodedSize(&m)
		for i := range 5 {
			mustAdd(t, o, Msg(fmt.Sprint(i), low, g))
		}
		if b := mustBegin(t, o, 2, 0); len(b.Messages) != 2 {
			t.Fatalf("Begin(2) took %d", len(b.Messages))
		}
		// Room for two messages in an array, not three.
		b := mustBegin(t, o, 10, message.ArraySize(2, 2*size))
		if len(b.Messages) != 2 {
			t.Fatalf("Begin(maxBytes for 2) took %d", len(b.Messages))
		}
		// A cap smaller than one message still yields one.
		b = mustBegin(t, o, 10, 10)
		if len(b.Messages) != 1 {
			t.Fatalf("Begin(maxBytes=10) took %d, want 1", len(b.Messages))
		}
	})

	t.Run("open batches are not handed out twice", func(t *testing.T) {
		o := newOutbox(t, 0)
		mustAdd(t, o, Msg("a", low, g), Msg("b", low, g))
		b1 := mustBegin(t, o, 1, 0)
		b2 := mustBegin(t, o, 1, 0)
		if ids(b1.Messages)[0] != "a" || ids(b2.Messages)[0] != "b" {
			t.Fatalf("batches = %v %v", ids(b1.Messages), ids(b2.Messages))
		}
		if b3 := mustBegin(t, o, 1, 0); len(b3.Messages) != 0 {
			t.Fatalf("third batch = %v, want empty", ids(b3.Messages))
		}
	})

	t.Run("end delivered removes, rest comes back in order", func(t *testing.T) {
		o := newOutbox(t, 0)
		mustAdd(t, o, Msg("a", low, g), Msg("b", low, g), Msg("c", low, g))
		b := mustBegin(t, o, 3, 0)
		if err := o.End(b, []int{1}); err != nil {
			t.Fatal(err)
		}
		mustAdd(t, o, Msg("d", low, g))
		got := ids(mustBegin(t, o, 10, 0).Messages)
		if fmt.Sprint(got) != "[a c d]" {
			t.Fatalf("after partial delivery = %v, want [a c d]", got)
		}
	})

	t.Run("end errors", func(t *testing.T) {
		o := newOutbox(t, 0)
		mustAdd(t, o, Msg("a", low, g))
		b := mustBegin(t, o, 1, 0)
		if err := o.End(b, []int{5}); err == nil {
			t.Fatal("End with an index out of range succeeded")
		}
		if err := o.End(b, all(1)); err != nil {
			t.Fatalf("End = %v", err)
		}
		if err := o.End(b, all(1)); err == nil {
			t.Fatal("End of an ended batch succeeded")
		}
	})

	t.Run("guaranteed is never dropped: back-pressure", func(t *testing.T) {
		m := Msg("g9", low, g) // same encoded size as g0..g3
		size := message.EncodedSize(&m)
		o := newOutbox(t, 3*size)
		for i := range 3 {
			mustAdd(t, o, Msg(fmt.Sprint("g", i), low, g))
		}
		_, err := o.Add(ctx, Msg("g3", low, g))
		if !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add over the bound = %v, want ErrOutboxFull", err)
		}
		got := ids(mustBegin(t, o, 10, 0).Messages)
		if fmt.Sprint(got) != "[g0 g1 g2]" {
			t.Fatalf("contents = %v, want [g0 g1 g2]", got)
		}
	})

	t.Run("best effort drops oldest with exact count", func(t *testing.T) {
		m := Msg("b9", low, be) // same encoded size as b0..b4
		size := message.EncodedSize(&m)
		o := newOutbox(t, 3*size)
		total := 0
		for i := range 5 {
			d, err := o.Add(ctx, Msg(fmt.Sprint("b", i), low, be))
			if err != nil {
				t.Fatal(err)
			}
			total += d
		}
		if total != 2 {
			t.Fatalf("dropped = %d, want 2", total)
		}
		got := ids(mustBegin(t, o, 10, 0).Messages)
		if fmt.Sprint(got) != "[b2 b3 b4]" {
			t.Fatalf("contents = %v, want [b2 b3 b4]", got)
		}
	})

	t.Run("concurrent adds lose nothing", func(t *testing.T) {
		o := newOutbox(t, 0)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if _, err := o.Add(ctx, Msg(fmt.Sprint(w, "-", i), low, g)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		seen := map[string]bool{}
		for {
			b := mustBegin(t, o, 33, 0)
			if len(b.Messages) == 0 {
				break
			}
			for _, id := range ids(b.Messages) {
				if seen[id] {
					t.Fatalf("message %s handed out twice", id)
				}
				seen[id] = true
			}
			if err := o.End(b, all(len(b.Messages))); err != nil {
				t.Fatal(err)
			}
		}
		if len(seen) != 200 {
			t.Fatalf("got %d distinct messages, want 200", len(seen))
		}
	})

	t.Run("message survives round trip", func(t *testing.T) {
		o := newOutbox(t, 0)
		in := Msg("rt", message.PriorityMedium, g)
		in.Properties = map[string][]string{"k": {"v"}}
		mustAdd(t, o, in)
		out := mustBegin(t, o, 1, 0).Messages[0]
		a, _ := message.Encode([]message.Message{in})
		b, _ := message.Encode([]message.Message{out})
		if string(a) != string(b) {
			t.Fatalf("message changed in the outbox:\n got %s\nwant %s", b, a)
		}
	})
}

func mustAdd(t *testing.T, o ports.Outbox, msgs ...message.Message) {
	t.Helper()
	if _, err := o.Add(context.Background(), msgs...); err != nil {
		t.Fatalf("Add: %v", err)
	}
}

func mustBegin(t *testing.T, o ports.Outbox, max, maxBytes int) ports.Batch {
	t.Helper()
	b, err := o.Begin(max, maxBytes)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return b
}
