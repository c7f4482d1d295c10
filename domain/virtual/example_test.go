package virtual_test

import (
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

const exampleModel = `{
  "urn": "urn:example:lamp",
  "name": "Lamp",
  "attributes": [
    {"name": "power", "type": "BOOLEAN", "writable": true, "defaultValue": false},
    {"name": "brightness", "alias": "dim", "type": "INTEGER", "range": "0,100", "writable": true, "defaultValue": 100},
    {"name": "temperature", "type": "NUMBER", "writable": false}
  ],
  "actions": [{"name": "blink", "argType": "INTEGER", "range": "1,10"}],
  "formats": [{
    "urn": "urn:example:lamp:overheat", "name": "overheat", "description": "Lamp too hot", "type": "ALERT",
    "value": {"fields": [{"name": "temperature", "type": "NUMBER", "optional": false}]}
  }]
}`

// exampleDevice returns a lamp with clientIds c1, c2, ...
func exampleDevice() *virtual.Device {
	m, err := model.Parse([]byte(exampleModel))
	if err != nil {
		panic(err)
	}
	n := 0
	newID := func() string { n++; return fmt.Sprintf("c%d", n) }
	return virtual.New("lamp-1", m, newID)
}

func printJSON(m message.Message) {
	b, err := message.AppendJSON(nil, &m)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(string(b))
}

var exampleNow = time.UnixMilli(1700000000000)

func ExampleDevice_Set() {
	d := exampleDevice()
	m, err := d.Set("temperature", 41.5, exampleNow) // a sensor reading: read-only is fine
	if err != nil {
		fmt.Println(err)
		return
	}
	printJSON(m)

	_, err = d.Set("dim", 140, exampleNow)
	fmt.Println(err)
	// Output:
	// {"clientId":"c1","source":"lamp-1","destination":"","sender":"","priority":"LOW","reliability":"BEST_EFFORT","eventTime":1700000000000,"type":"DATA","payload":{"format":"urn:example:lamp:attributes","data":{"temperature":41.5}}}
	// attribute "brightness": 140 is out of range 0..100
}

func ExampleDevice_Update() {
	d := exampleDevice()
	m, err := d.Update().Set("power", true).Set("dim", 40).Finish(exampleNow)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Data.Format, m.Data.Fields)

	_, err = d.Update().Set("power", "on").Set("colour", "red").Finish(exampleNow)
	fmt.Println(err)
	// Output:
	// urn:example:lamp:attributes [{power true} {brightness 40}]
	// attribute "power": want BOOLEAN, got "on"
	// attribute "colour": not in device model "urn:example:lamp"
}

func ExampleDevice_HandleRequest() {
	d := exampleDevice()
	req := &message.Message{
		ID: "r1", Source: "cloud", Destination: "lamp-1", Type: message.TypeRequest,
		Request: &message.Request{
			Method:  "POST",
			URL:     "deviceModels/urn:example:lamp/attributes",
			Headers: map[string][]string{"x-http-method-override": {"PATCH"}},
			Body:    []byte(`{"power":true,"dim":30}`),
		},
	}
	o := d.HandleRequest(req, exampleNow)
	if o.Final() {
		fmt.Println("refused:", string(o.Response.Response.Body))
		return
	}
	for _, c := range o.Changes {
		fmt.Printf("on change %s: %v -> %v\n", c.Name, c.Old, c.New) // the application's callbacks
	}
	r := d.Complete(o, nil, exampleNow)
	fmt.Println(r.Response.Response.StatusCode, string(r.Response.Response.Body))
	fmt.Println(r.Data.Data.Fields)

	bad := *req
	bad.Request = &message.Request{Method: "PUT", URL: "deviceModels/urn:example:lamp/attributes/temperature", Body: []byte(`{"value":20}`)}
	o = d.HandleRequest(&bad, exampleNow)
	fmt.Println(o.Final(), o.Response.Response.StatusCode, string(o.Response.Response.Body))
	// Output:
	// on change power: false -> true
	// on change brightness: 100 -> 30
	// 200 OK
	// [{power true} {brightness 30}]
	// true 400 attribute "temperature": read-only in device model "urn:example:lamp", the cloud may set only writable attributes
}

func ExampleDevice_NewAlert() {
	d := exampleDevice()
	b, err := d.NewAlert("urn:example:lamp:overheat")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := b.Set("temperature", 92.5).Build(exampleNow)
	if err != nil {
		fmt.Println(err)
		return
	}
	printJSON(m)

	_, err = b.Severity(message.SeverityCritical).Set("temperature", nil).Build(exampleNow)
	fmt.Println(err)
	// Output:
	// {"clientId":"c1","source":"lamp-1","destination":"","sender":"","priority":"HIGHEST","reliability":"GUARANTEED_DELIVERY","eventTime":1700000000000,"type":"ALERT","payload":{"format":"urn:example:lamp:overheat","severity":"SIGNIFICANT","description":"Lamp too hot","data":{"temperature":92.5}}}
	// alert "urn:example:lamp:overheat": field "temperature": want NUMBER, got null
}

func ExampleDevice_NewData() {
	m, err := model.Parse([]byte(`{"urn":"urn:example:meter","name":"Meter","formats":[{
	  "urn":"urn:example:meter:energy","name":"energy","type":"DATA",
	  "value":{"fields":[{"name":"kwh","type":"NUMBER","optional":false},{"name":"since","type":"DATETIME","optional":true}]}}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	d := virtual.New("meter-1", m, func() string { return "c1" })
	b, err := d.NewData("urn:example:meter:energy")
	if err != nil {
		fmt.Println(err)
		return
	}
	msg, err := b.Set("since", exampleNow).Set("kwh", 3.2).Build(exampleNow)
	if err != nil {
		fmt.Println(err)
		return
	}
	printJSON(msg)
	// Output:
	// {"clientId":"c1","source":"meter-1","destination":"","sender":"","priority":"LOW","reliability":"BEST_EFFORT","eventTime":1700000000000,"type":"DATA","payload":{"format":"urn:example:meter:energy","data":{"kwh":3.2,"since":1700000000000}}}
}

func ExampleNew() {
	m, err := model.Parse([]byte(exampleModel))
	if err != nil {
		fmt.Println(err)
		return
	}
	d := virtual.New("lamp-1", m, func() string { return "c1" },
		virtual.WithDataQoS(virtual.QoS{Priority: message.PriorityMedium, Reliability: message.GuaranteedDelivery}))
	v, ok := d.Get("dim") // by alias, seeded from the default value
	fmt.Println(v, ok)
	msg, _ := d.Set("power", true, exampleNow)
	fmt.Println(msg.Priority, msg.Reliability)
	// Output:
	// 100 true
	// MEDIUM GUARANTEED_DELIVERY
}
