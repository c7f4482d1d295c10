package policy_test

import (
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/policy"
)

// A policy that averages temperature over 10 s windows and raises an alert
// (without dropping the value) when the average goes above 30.
func Example() {
	m, err := model.Parse([]byte(`{"urn": "urn:example:thermo", "name": "thermo",
	  "attributes": [{"name": "temp", "type": "NUMBER"}],
	  "formats": [{"urn": "urn:example:thermo:hot", "name": "hot", "type": "ALERT",
	    "value": {"fields": [{"name": "temp", "type": "NUMBER", "optional": false}]}}]}`))
	if err != nil {
		panic(err)
	}
	p, err := policy.Parse([]byte(`{"id": "p1", "enabled": true, "pipelines": [{"attributeName": "temp", "pipeline": [
	  {"id": "mean", "parameters": {"window": 10000}},
	  {"id": "alertCondition", "parameters": {"condition": "$(temp) > 30", "filter": false,
	    "alert": {"urn": "urn:example:thermo:hot", "fields": {"temp": "$(temp)"}, "severity": "SIGNIFICANT"}}}]}]}`))
	if err != nil {
		panic(err)
	}
	e, err := policy.Compile(p, m, policy.Options{})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2025, 11, 27, 0, 0, 0, 0, time.UTC)
	for i, x := range []float64{29, 31, 33} {
		v, _ := model.Number(x)
		e.Offer(t0.Add(time.Duration(i)*time.Second), map[string]model.Value{"temp": v}, nil)
	}
	next, _ := e.Next()
	fmt.Println("tick at", next.Format(time.TimeOnly))
	out := e.Tick(next, nil)
	for _, d := range out.Data {
		fmt.Println("data", d.Time.Format(time.TimeOnly), d.Values["temp"])
	}
	for _, a := range out.Alerts {
		fmt.Println("alert", a.Severity, a.Fields["temp"])
	}
	// Output:
	// tick at 00:00:10
	// data 00:00:10 31
	// alert SIGNIFICANT 31
}

// Compile reports every problem of a policy at once, each with its place.
func ExampleCompile() {
	m, _ := model.Parse([]byte(`{"urn": "urn:example:thermo", "name": "thermo", "attributes": [{"name": "temp", "type": "NUMBER"}]}`))
	p, _ := policy.Parse([]byte(`{"id": "p1", "pipelines": [
	  {"attributeName": "temp", "pipeline": [{"id": "mean", "parameters": {"window": -5}}]},
	  {"attributeName": "pressure", "pipeline": []}]}`))
	_, err := policy.Compile(p, m, policy.Options{})
	fmt.Println(err)
	// Output:
	// pipelines[0].pipeline[0].parameters.window: -5 is not a duration; expected milliseconds > 0
	// pipelines[1].attributeName: "pressure" is not an attribute of device model "urn:example:thermo"
}
