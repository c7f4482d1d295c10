package model_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

const exampleModel = `{
  "urn": "urn:com:example:iot:device:fan",
  "name": "Fan",
  "created": 1700000000000,
  "attributes": [
    {"name": "speed", "alias": "rpm", "type": "INTEGER", "range": "0,3000", "writable": true, "defaultValue": 1200},
    {"name": "on", "type": "BOOLEAN", "writable": true}
  ],
  "actions": [
    {"name": "boost", "argType": "INTEGER", "range": "1,60"},
    {"name": "timer", "arguments": [
      {"name": "at", "type": "DATETIME"},
      {"name": "minutes", "type": "INTEGER", "range": "1,120", "defaultValue": 30}
    ]}
  ],
  "formats": [
    {"urn": "urn:com:example:iot:device:fan:stalled", "name": "stalled", "type": "ALERT",
     "value": {"fields": [{"name": "rpm", "type": "INTEGER", "optional": false}]}}
  ]
}`

func ExampleParse() {
	m, err := model.Parse([]byte(exampleModel))
	if err != nil {
		fmt.Println(err)
		return
	}
	speed, _ := m.Attribute("rpm") // by alias
	fmt.Println(speed.Name, speed.Type, speed.Default, speed.Writable)
	boost, _ := m.Action("boost")
	fmt.Println(boost.Legacy, boost.Arguments[0].Name, boost.Arguments[0].Type)
	alert, _ := m.Format("urn:com:example:iot:device:fan:stalled")
	fmt.Println(alert.Type, alert.Fields[0].Name)
	// Output:
	// speed INTEGER 1200 true
	// true value INTEGER
	// ALERT rpm
}

func ExampleParse_errors() {
	_, err := model.Parse([]byte(`{"urn": "urn:x", "attributes": [
	  {"name": "level", "type": "INTEGER", "writable": "yes"},
	  {"name": "mode", "type": "BOOLEAN", "defaultValue": "auto"}]}`))
	fmt.Println(err)
	// Output:
	// device model: attributes[0].writable: want boolean, got string
	// device model: attributes[1].defaultValue: want BOOLEAN, got "auto"
}

func ExampleDeviceModel_Validate() {
	m := &model.DeviceModel{
		URN: "urn:x",
		Attributes: []model.Attribute{
			{Name: "humidity", Type: model.TypeInteger, Range: &model.Range{Min: 100, Max: 0}},
			{Name: "unit", Alias: "humidity", Type: "TEXT"},
		},
	}
	fmt.Println(m.Validate())
	// Output:
	// device model "urn:x": attribute "humidity": range "100,0": min 100 is greater than max 0
	// device model "urn:x": attribute "unit": alias "humidity" is already the name of attribute "humidity"
	// device model "urn:x": attribute "unit": unknown type "TEXT": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI
}

func ExampleDeviceModel_MarshalJSON() {
	m := &model.DeviceModel{
		URN:        "urn:x",
		Name:       "X",
		Attributes: []model.Attribute{{Name: "on", Type: model.TypeBoolean, Writable: true, Default: model.Boolean(true)}},
		Actions:    []model.Action{{Name: "dim", Legacy: true, Arguments: []model.Argument{{Name: "value", Type: model.TypeNumber, Range: &model.Range{Min: 0, Max: 0.5}}}}},
	}
	out, _ := json.Marshal(m)
	fmt.Println(string(out))
	// Output:
	// {"urn":"urn:x","name":"X","system":false,"draft":false,"attributes":[{"name":"on","type":"BOOLEAN","writable":true,"defaultValue":true}],"actions":[{"name":"dim","argType":"NUMBER","range":"0,0.5"}],"formats":[]}
}

func ExampleAttribute_Check() {
	humidity := &model.Attribute{Name: "humidity", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 100}}
	v, err := humidity.Check(55.0) // a number decoded by encoding/json
	fmt.Println(v.Type(), v.Int(), err)
	_, err = humidity.Check(140)
	fmt.Println(err)
	_, err = humidity.Check("wet")
	fmt.Println(err)
	// Output:
	// INTEGER 55 <nil>
	// attribute "humidity": 140 is out of range 0..100
	// attribute "humidity": want INTEGER, got "wet"
}

func ExampleFormatField_Check() {
	f := &model.FormatField{Name: "temp", Type: model.TypeNumber}
	v, _ := f.Check(21)
	fmt.Println(v.Any())
	_, err := f.Check(true)
	fmt.Println(err)
	// Output:
	// 21
	// field "temp": want NUMBER, got true
}

func ExampleAction_ConvertArgs() {
	m, _ := model.Parse([]byte(exampleModel))
	timer, _ := m.Action("timer")
	args, err := timer.ConvertArgs(map[string]any{"at": 1700000000000.0})
	fmt.Println(args["at"], args["minutes"], err)
	_, err = timer.ConvertArgs(map[string]any{"minutes": 0, "seconds": 5})
	fmt.Println(err)
	boost, _ := m.Action("boost")
	args, _ = boost.ConvertArgs(map[string]any{"value": 10}) // legacy: {"value": v}
	fmt.Println(args["value"])
	// Output:
	// 2023-11-14T22:13:20.000Z 30 <nil>
	// action "timer": unknown argument "seconds": want one of "at", "minutes"
	// action "timer": argument "at" is missing
	// action "timer": argument "minutes": 0 is out of range 1..120
	// 10
}

func ExampleType_Convert() {
	for _, in := range []any{json.Number("1700000000000"), "2023-11-14T22:13:20Z", time.UnixMilli(0), 1.5} {
		v, err := model.TypeDateTime.Convert(in)
		fmt.Println(v, err)
	}
	_, err := model.TypeInteger.Convert(1.5)
	fmt.Println(err)
	// Output:
	// 2023-11-14T22:13:20.000Z <nil>
	// 2023-11-14T22:13:20.000Z <nil>
	// 1970-01-01T00:00:00.000Z <nil>
	// <no value> want DATETIME (epoch milliseconds or an RFC 3339 string), got 1.5
	// want INTEGER, got 1.5
}

func ExampleValue() {
	n, _ := model.Number(21.5)
	s, _ := model.String("hall")
	u, _ := model.URI("https://objects.example/snap.jpg")
	for _, v := range []model.Value{model.Integer(7), n, s, model.Boolean(true), model.DateTime(time.UnixMilli(1500)), u, {}} {
		wire, _ := json.Marshal(v)
		fmt.Printf("%-8s %-32v %T %s\n", v.Type(), v, v.Any(), wire)
	}
	// Output:
	// INTEGER  7                                int64 7
	// NUMBER   21.5                             float64 21.5
	// STRING   "hall"                           string "hall"
	// BOOLEAN  true                             bool true
	// DATETIME 1970-01-01T00:00:01.500Z         time.Time 1500
	// URI      "https://objects.example/snap.jpg" string "https://objects.example/snap.jpg"
	//          <no value>                       <nil> null
}

func ExampleIsSystemURN() {
	fmt.Println(model.IsSystemURN(model.CapDiagnostics), model.IsSystemURN("urn:com:example:iot:device:fan"))
	fmt.Println(model.AttributesFormat("urn:com:example:iot:device:fan"))
	// Output:
	// true false
	// urn:com:example:iot:device:fan:attributes
}
