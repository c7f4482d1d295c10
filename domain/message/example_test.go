package message_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/message"
)

func ExampleEncode() {
	msgs := []message.Message{{
		ClientID:  "6b3c1f1e-1b4e-4c53-9f58-d2b7b6a7c001",
		Source:    "0-AEBAHA",
		Priority:  message.PriorityLow,
		EventTime: time.UnixMilli(1700000000000),
		Type:      message.TypeData,
		Data: &message.Data{
			Format: "urn:com:example:thermostat:attributes",
			Fields: []message.Field{{Name: "temperature", Value: 21.5}, {Name: "mode", Value: "heating"}},
		},
	}}
	body, err := message.Encode(msgs)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(body))
	// Output:
	// [{"clientId":"6b3c1f1e-1b4e-4c53-9f58-d2b7b6a7c001","source":"0-AEBAHA","destination":"","sender":"","priority":"LOW","reliability":"BEST_EFFORT","eventTime":1700000000000,"type":"DATA","payload":{"format":"urn:com:example:thermostat:attributes","data":{"temperature":21.5,"mode":"heating"}}}]
}

func ExampleDecode() {
	body := []byte(`[{"id":"r1","clientId":"c1","source":"iotserver","destination":"0-AEBAHA",
		"type":"REQUEST","payload":{"method":"POST","url":"deviceModels/urn:x/attributes",
		"headers":{"X-HTTP-Method-Override":["PATCH"]},"body":"eyJtb2RlIjoib2ZmIn0="}}]`)
	msgs, err := message.Decode(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	req := msgs[0].Request
	fmt.Println(msgs[0].Type, req.EffectiveMethod(), req.URL, string(req.Body))

	_, err = message.Decode([]byte(`[{"type":"DATA"},{"type":"DATA","priority":"URGENT"}]`))
	var de *message.DecodeError
	if errors.As(err, &de) {
		fmt.Println(de.Index, de.Field)
		fmt.Println(err)
	}
	// Output:
	// REQUEST PATCH deviceModels/urn:x/attributes {"mode":"off"}
	// 1 priority
	// message 1: field "priority": unknown priority "URGENT"
}

func ExampleAppendJSON() {
	m := &message.Message{ClientID: "c1", Source: "d1", Type: message.TypeResponse,
		Response: &message.Response{StatusCode: 200, RequestID: "r1", Body: []byte("OK")}}
	buf := make([]byte, 0, message.EncodedSize(m)) // exact: no reallocation
	buf, err := message.AppendJSON(buf, m)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(buf) == cap(buf))
	fmt.Println(string(buf))
	// Output:
	// true
	// {"clientId":"c1","source":"d1","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"RESPONSE","payload":{"statusCode":200,"url":"","requestId":"r1","headers":{},"body":"T0s="}}
}

// A batch that must fit a client's acceptBytes budget is cut with EncodedSize
// and ArraySize, without encoding anything twice.
func ExampleArraySize() {
	const acceptBytes = 400
	pending := []message.Message{
		{ClientID: "a", Source: "d", Type: message.TypeData, Data: &message.Data{Format: "urn:f"}},
		{ClientID: "b", Source: "d", Type: message.TypeData, Data: &message.Data{Format: "urn:f"}},
		{ClientID: "c", Source: "d", Type: message.TypeData, Data: &message.Data{Format: "urn:f"}},
	}
	n, sum := 0, 0
	for i := range pending {
		size := message.EncodedSize(&pending[i])
		if message.ArraySize(n+1, sum+size) > acceptBytes {
			break
		}
		n, sum = n+1, sum+size
	}
	body, _ := message.Encode(pending[:n])
	fmt.Println(n, len(body), message.ArraySize(n, sum))
	// Output:
	// 2 349 349
}

func ExampleMessage_Validate() {
	m := message.Message{ClientID: "c1", Type: message.TypeAlert,
		Alert: &message.Alert{Format: "urn:com:example:tooHot", Severity: "URGENT"}}
	fmt.Println(m.Validate())
	// Output:
	// field "source": missing; expected the endpoint ID of the originator
	// field "payload.severity": unknown severity "URGENT"; expected LOW, NORMAL, SIGNIFICANT or CRITICAL
}

func ExampleRequest_EffectiveMethod() {
	r := message.Request{Method: "post", Headers: map[string][]string{"x-http-method-override": {"patch"}}}
	fmt.Println(r.EffectiveMethod())
	// Output: PATCH
}

func ExampleReconciliationMark() {
	fmt.Println(message.ReconciliationMark([]string{
		"deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged",
		"deviceModels/urn:oracle:iot:dcd:capability:diagnostics/info",
	}))
	// Output: 1fc8e0c3b5e98f87a38dc4e95e4c14f0
}
