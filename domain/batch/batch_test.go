package batch

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// msg returns a DATA message named id with priority p whose payload holds a
// string of pad bytes, so that tests can shape its encoded size.
func msg(id string, p message.Priority, pad int) message.Message {
	return message.Message{
		ClientID:  id,
		Source:    "ep-1",
		Priority:  p,
		EventTime: t0,
		Type:      message.TypeData,
		Data: &message.Data{
			Format: "urn:test:attributes",
			Fields: []message.Field{{Name: "s", Value: strings.Repeat("x", pad)}},
		},
	}
}

func size(m message.Message) int { return message.EncodedSize(&m) }

func ids(ms []message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ClientID
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"valid", Config{MaxMessages: 100, MaxBytes: 10000, MaxAge: time.Second}, ""},
		{"zero age is valid", Config{MaxMessages: 1, MaxBytes: 1}, ""},
		{"no messages", Config{MaxMessages: 0, MaxBytes: 10}, "batch config: MaxMessages is 0, expected at least 1"},
		{"no bytes", Config{MaxMessages: 1, MaxBytes: -5}, "batch config: MaxBytes is -5, expected at least 1"},
		{"negative age", Config{MaxMessages: 1, MaxBytes: 1, MaxAge: -time.Second}, "batch config: MaxAge is -1s, expected 0 or more"},
		{"everything wrong at once", Config{MaxAge: -time.Millisecond},
			"batch config: MaxMessages is 0, expected at least 1\n" +
				"batch config: MaxBytes is 0, expected at least 1\n" +
				"batch config: MaxAge is -1ms, expected 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNextOrder(t *testing.T) {
	tests := []struct {
		name string
		add  []message.Message
		want [][]string // successive Next(0) results
	}{
		{
			name: "fifo within one priority",
			add:  []message.Message{msg("a", message.PriorityLow, 1), msg("b", message.PriorityLow, 1), msg("c", message.PriorityLow, 1)},
			want: [][]string{{"a", "b", "c"}},
		},
		{
			name: "highest priority first, fifo within each",
			add: []message.Message{
				msg("low1", message.PriorityLow, 1), msg("hi1", message.PriorityHighest, 1),
				msg("lowest1", message.PriorityLowest, 1), msg("med1", message.PriorityMedium, 1),
				msg("hi2", message.PriorityHighest, 1), msg("low2", message.PriorityLow, 1),
				msg("high1", message.PriorityHigh, 1),
			},
			want: [][]string{{"hi1", "hi2", "high1", "med1"}, {"low1", "low2", "lowest1"}},
		},
		{
			name: "max messages splits batches in priority order",
			add: []message.Message{
				msg("l1", message.PriorityLow, 1), msg("l2", message.PriorityLow, 1), msg("l3", message.PriorityLow, 1),
				msg("h1", message.PriorityHigh, 1), msg("h2", message.PriorityHigh, 1),
			},
			want: [][]string{{"h1", "h2", "l1", "l2"}, {"l3"}},
		},
		{
			// A message with an invalid priority cannot be encoded, so it also goes alone.
			name: "out-of-range priorities are ordered as the nearest valid one",
			add:  []message.Message{msg("under", -3, 1), msg("over", 9, 1), msg("med", message.PriorityMedium, 1)},
			want: [][]string{{"over"}, {"med"}, {"under"}},
		},
		{
			name: "an unencodable message goes alone and does not hold others back",
			add: []message.Message{
				msg("a", message.PriorityLow, 1), {ClientID: "bad", Priority: message.PriorityLow, Type: "NOPE"},
				msg("b", message.PriorityLow, 1), msg("c", message.PriorityLow, 1),
			},
			want: [][]string{{"a"}, {"bad"}, {"b", "c"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{MaxMessages: 4, MaxBytes: 1 << 20, MaxAge: time.Second})
			for _, m := range tt.add {
				b.Add(m, t0)
			}
			for i, want := range tt.want {
				if got := ids(b.Next(0)); !slices.Equal(got, want) {
					t.Fatalf("Next #%d = %v, want %v", i+1, got, want)
				}
			}
			if b.Len() != 0 || b.Bytes() != 0 {
				t.Errorf("after draining Len() = %d, Bytes() = %d, want 0, 0", b.Len(), b.Bytes())
			}
			if got := b.Next(0); got != nil {
				t.Errorf("Next on empty = %v, want nil", ids(got))
			}
		})
	}
}

func TestNextByteCap(t *testing.T) {
	a, bb, c := msg("a", message.PriorityLow, 10), msg("b", message.PriorityLow, 10), msg("c", message.PriorityLow, 10)
	s := size(a) // all three have the same size
	two := message.ArraySize(2, 2*s)
	huge := msg("huge", message.PriorityLow, 5000)
	tests := []struct {
		name     string
		cfgBytes int
		maxBytes int
		add      []message.Message
		want     [][]string
	}{
		{"exact fit of two", two, 0, []message.Message{a, bb, c}, [][]string{{"a", "b"}, {"c"}}},
		{"one byte short of two", two - 1, 0, []message.Message{a, bb, c}, [][]string{{"a"}, {"b"}, {"c"}}},
		{"argument overrides config", 1 << 20, two, []message.Message{a, bb, c}, [][]string{{"a", "b"}, {"c"}}},
		{"negative argument uses config", two, -1, []message.Message{a, bb, c}, [][]string{{"a", "b"}, {"c"}}},
		{"oversize message alone at the front", two, 0, []message.Message{huge, a, bb}, [][]string{{"huge"}, {"a", "b"}}},
		{"oversize message waits its turn then goes alone", two, 0, []message.Message{a, huge, bb}, [][]string{{"a"}, {"huge"}, {"b"}}},
		{"a lower priority never overtakes a higher one that does not fit", two, 0,
			[]message.Message{msg("h", message.PriorityHigh, 10), msg("H", message.PriorityHigh, 5000), msg("l", message.PriorityLow, 1)},
			[][]string{{"h"}, {"H"}, {"l"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{MaxMessages: 100, MaxBytes: tt.cfgBytes})
			for _, m := range tt.add {
				b.Add(m, t0)
			}
			for i, want := range tt.want {
				before := b.Bytes()
				got := b.Next(tt.maxBytes)
				if !slices.Equal(ids(got), want) {
					t.Fatalf("Next #%d = %v, want %v", i+1, ids(got), want)
				}
				sum := 0
				for _, m := range got {
					sum += size(m)
				}
				limit := tt.maxBytes
				if limit <= 0 {
					limit = tt.cfgBytes
				}
				if arr := message.ArraySize(len(got), sum); len(got) > 1 && arr > limit {
					t.Errorf("Next #%d is %d bytes, over the cap", i+1, arr)
				}
				if before < b.Bytes() {
					t.Errorf("Bytes grew from %d to %d", before, b.Bytes())
				}
			}
			if b.Len() != 0 {
				t.Errorf("Len() = %d after draining, want 0", b.Len())
			}
		})
	}
}

func TestLenBytes(t *testing.T) {
	b := New(Config{MaxMessages: 2, MaxBytes: 1 << 20})
	ms := []message.Message{msg("a", message.PriorityLow, 3), msg("b", message.PriorityHigh, 40), msg("c", message.PriorityLow, 7)}
	sum := 0
	for i, m := range ms {
		b.Add(m, t0)
		sum += size(m)
		if b.Len() != i+1 {
			t.Fatalf("Len() = %d, want %d", b.Len(), i+1)
		}
		if want := message.ArraySize(i+1, sum); b.Bytes() != want {
			t.Fatalf("Bytes() = %d, want %d", b.Bytes(), want)
		}
	}
	all := []message.Message{ms[1], ms[0], ms[2]}
	if enc, err := message.Encode(all); err != nil || len(enc) != b.Bytes() {
		t.Fatalf("Bytes() = %d, encoded array is %d bytes (err %v)", b.Bytes(), len(enc), err)
	}
	b.Next(0) // b and a
	if b.Len() != 1 || b.Bytes() != message.ArraySize(1, size(ms[2])) {
		t.Errorf("after Next Len() = %d, Bytes() = %d, want 1, %d", b.Len(), b.Bytes(), message.ArraySize(1, size(ms[2])))
	}
}

func TestReady(t *testing.T) {
	small := msg("s", message.PriorityLow, 1)
	tests := []struct {
		name string
		cfg  Config
		add  []message.Message
		at   time.Duration // now = t0 + at; every message is added at t0
		want bool
	}{
		{"empty is never ready", Config{MaxMessages: 1, MaxBytes: 1}, nil, time.Hour, false},
		{"young and few", Config{MaxMessages: 3, MaxBytes: 1 << 20, MaxAge: time.Second}, []message.Message{small, small}, 999 * time.Millisecond, false},
		{"count reached", Config{MaxMessages: 2, MaxBytes: 1 << 20, MaxAge: time.Hour}, []message.Message{small, small}, 0, true},
		{"bytes reached", Config{MaxMessages: 10, MaxBytes: message.ArraySize(2, 2*size(small)), MaxAge: time.Hour}, []message.Message{small, small}, 0, true},
		{"bytes one short", Config{MaxMessages: 10, MaxBytes: message.ArraySize(2, 2*size(small)) + 1, MaxAge: time.Hour}, []message.Message{small, small}, 0, false},
		{"oldest exactly MaxAge old", Config{MaxMessages: 10, MaxBytes: 1 << 20, MaxAge: time.Second}, []message.Message{small}, time.Second, true},
		{"zero MaxAge sends at once", Config{MaxMessages: 10, MaxBytes: 1 << 20}, []message.Message{small}, 0, true},
		{"unencodable message waits for nobody", Config{MaxMessages: 10, MaxBytes: 1 << 20, MaxAge: time.Hour},
			[]message.Message{small, {ClientID: "bad", Type: "NOPE"}}, 0, true},
		{"highest priority waits for nobody", Config{MaxMessages: 10, MaxBytes: 1 << 20, MaxAge: time.Hour},
			[]message.Message{small, msg("alert", message.PriorityHighest, 1)}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.cfg)
			for _, m := range tt.add {
				b.Add(m, t0)
			}
			if got := b.Ready(t0.Add(tt.at)); got != tt.want {
				t.Errorf("Ready(t0+%v) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	b := New(Config{MaxMessages: 10, MaxBytes: 1 << 20, MaxAge: 5 * time.Second})
	if d, ok := b.Deadline(); ok {
		t.Fatalf("Deadline() on empty = %v, true, want false", d)
	}
	// The oldest message is in a lower-priority queue than the newest.
	b.Add(msg("low", message.PriorityLow, 1), t0)
	b.Add(msg("high", message.PriorityHigh, 1), t0.Add(2*time.Second))
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(5*time.Second)) {
		t.Errorf("Deadline() = %v, %v, want %v, true", d, ok, t0.Add(5*time.Second))
	}
	if b.Ready(t0.Add(5*time.Second - time.Nanosecond)) {
		t.Errorf("Ready just before the deadline = true, want false")
	}
	b.Next(0)
	b.Add(msg("later", message.PriorityMedium, 1), t0.Add(3*time.Second))
	b.Add(msg("lowest", message.PriorityLowest, 1), t0.Add(4*time.Second))
	if d, ok := b.Deadline(); !ok || !d.Equal(t0.Add(8*time.Second)) {
		t.Errorf("Deadline() after Next = %v, %v, want %v, true", d, ok, t0.Add(8*time.Second))
	}
}

func TestNewClampsInvalidConfig(t *testing.T) {
	b := New(Config{MaxMessages: -1, MaxBytes: 0, MaxAge: -time.Hour})
	b.Add(msg("a", message.PriorityLow, 1), t0)
	b.Add(msg("b", message.PriorityLow, 1), t0)
	if !b.Ready(t0) {
		t.Errorf("Ready() = false, want true (MaxAge clamped to 0)")
	}
	if got := ids(b.Next(0)); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Next(0) = %v, want [a] (caps clamped to 1)", got)
	}
}

// TestQueueCompaction interleaves adds and takes so that the queues compact
// many times, and checks that order survives.
func TestQueueCompaction(t *testing.T) {
	b := New(Config{MaxMessages: 3, MaxBytes: 1 << 20})
	var want, got []string
	next := 0
	for round := range 200 {
		for range 5 {
			id := fmt.Sprint(next)
			next++
			b.Add(msg(id, message.PriorityMedium, 1), t0)
			want = append(want, id)
		}
		if round%2 == 0 {
			got = append(got, ids(b.Next(0))...)
		}
	}
	for b.Len() > 0 {
		got = append(got, ids(b.Next(0))...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order broken: got %d messages, first difference at %d", len(got), firstDiff(got, want))
	}
	if q := &b.queues[message.PriorityMedium]; q.len() != 0 || q.head != 0 {
		t.Errorf("drained queue has len %d head %d, want 0, 0", q.len(), q.head)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func BenchmarkAddNext10000(b *testing.B) {
	ms := make([]message.Message, 10000)
	for i := range ms {
		ms[i] = msg(fmt.Sprint(i), message.Priority(i%5), 20)
	}
	b.ReportAllocs()
	for b.Loop() {
		bt := New(Config{MaxMessages: 100, MaxBytes: 10000, MaxAge: time.Second})
		for i := range ms {
			bt.Add(ms[i], t0)
		}
		for bt.Len() > 0 {
			bt.Next(0)
		}
	}
}
