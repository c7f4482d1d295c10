package message

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error is a
// *DecodeError, and that whatever decodes re-encodes (compact, of the predicted
// size) and decodes to the same messages.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files: %v", err)
	}
	var all []byte
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(append([]byte("["), b...), ']')) // one seed per type
		if i > 0 {
			all = append(all, ',')
		}
		all = append(all, b...)
	}
	f.Add(append(append([]byte("["), all...), ']'))
	for _, seed := range []string{
		"", "null", "[]", " [ ] ",
		`[{"payload":{"format":"f","data":{"a":1.5,"b":-0,"c":"\ud83d\ude42","d":null,"e":true}},"type":"DATA","eventTime":1.5e3}]`,
		`[{"type":"REQUEST","payload":{"method":"POST","headers":{"x-http-method-override":["PATCH"]},"params":{"a":"b"},"body":"e30"}}]`,
		`[{"type":"RESPONSE","payload":{"statusCode":404,"body":"","headers":{"h":[null]}}}]`,
		`[{"type":"RESOURCES_REPORT","payload":{"type":"JSON","value":{"resources":[{"name":"n"}]}}}]`,
		`[{"type":"ALERT","priority":"HIGHEST","reliability":"GUARANTEED_DELIVERY","properties":{"k":[]}}]`,
		`[{"type":"DATA","payload":{"format":"f"},"type":"ALERT"}]`,
		`[{"type":"DATA","priority":"URGENT"}]`,
		`[{"type":"DATA","x":[[[[{"y":"\u00"}]]]]}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := Decode(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || msgs != nil {
				t.Fatalf("error %T %v with %d messages", err, err, len(msgs))
			}
			return
		}
		enc, err := Encode(msgs)
		if err != nil {
			t.Fatalf("decoded messages do not encode: %v", err)
		}
		mustCompact(t, enc)
		sum := 0
		for i := range msgs {
			n := EncodedSize(&msgs[i])
			one, err := AppendJSON(nil, &msgs[i])
			if err != nil || n != len(one) {
				t.Fatalf("message %d: EncodedSize %d, AppendJSON %d bytes, %v", i, n, len(one), err)
			}
			sum += n
		}
		if want := ArraySize(len(msgs), sum); len(enc) != want {
			t.Fatalf("Encode wrote %d bytes, ArraySize says %d", len(enc), want)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		if !reflect.DeepEqual(back, msgs) {
			t.Fatalf("round trip differs\nfirst:  %#v\nsecond: %#v", msgs, back)
		}
	})
}

// FuzzAppendString checks the string encoder against encoding/json and stringSize.
func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkString(t, s) })
}
