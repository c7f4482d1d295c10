package batch_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/batch"
	"github.com/iotnode/iotnode/domain/message"
)

func ExampleBatcher() {
	now := time.UnixMilli(1700000000000)
	data := func(id string, p message.Priority) message.Message {
		return message.Message{ClientID: id, Source: "ep-1", Priority: p, EventTime: now, Type: message.TypeData,
			Data: &message.Data{Format: "urn:example:attributes", Fields: []message.Field{{Name: "t", Value: 21.5}}}}
	}
	b := batch.New(batch.Config{MaxMessages: 2, MaxBytes: 4192, MaxAge: time.Second})
	b.Add(data("telemetry-1", message.PriorityLow), now)
	fmt.Println("ready:", b.Ready(now))
	deadline, _ := b.Deadline()
	fmt.Println("deadline in:", deadline.Sub(now))

	b.Add(data("alert", message.PriorityHighest), now.Add(100*time.Millisecond))
	b.Add(data("telemetry-2", message.PriorityLow), now.Add(200*time.Millisecond))
	fmt.Println("ready:", b.Ready(now.Add(200*time.Millisecond)), "queued bytes:", b.Bytes())
	for b.Len() > 0 {
		var ids []string
		for _, m := range b.Next(0) {
			ids = append(ids, m.ClientID)
		}
		fmt.Println(strings.Join(ids, " "))
	}
	// Output:
	// ready: false
	// deadline in: 1s
	// ready: true queued bytes: 662
	// alert telemetry-1
	// telemetry-2
}

func ExampleConfig_Validate() {
	err := batch.Config{MaxMessages: 0, MaxBytes: 4192, MaxAge: -time.Second}.Validate()
	fmt.Println(err)
	// Output:
	// batch config: MaxMessages is 0, expected at least 1
	// batch config: MaxAge is -1s, expected 0 or more
}
