package message

import (
	"testing"
	"time"
)

// typicalData is a typical attribute update: three attributes, a float, an int and a string.
func typicalData() *Message {
	return &Message{
		ClientID: "8d2f6a4e-5b0c-4f1e-9a7d-3c2b1a0f9e8d", Source: "0-AEBAHA", Priority: PriorityLow,
		Reliability: BestEffort, EventTime: time.UnixMilli(1_700_000_000_123), Type: TypeData,
		Data: &Data{Format: "urn:com:example:thermostat:attributes", Fields: []Field{
			{"temperature", 21.5}, {"humidity", int64(48)}, {"mode", "heating"},
		}},
	}
}

func BenchmarkEncodeData(b *testing.B) {
	m := typicalData()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendJSON(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkMarshalJSONData(b *testing.B) {
	m := typicalData()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodedSize(b *testing.B) {
	m := typicalData()
	b.ReportAllocs()
	for b.Loop() {
		if EncodedSize(m) < 0 {
			b.Fatal("unencodable")
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data, err := Encode([]Message{*typicalData()})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	m := typicalData()
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
