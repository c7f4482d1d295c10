package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/iotnode/iotnode/cloud/client"
)

// AllMessages reads every stored DATA message of a device, oldest first,
// 500 per call; the cursor makes sure no message is seen twice or missed.
func ExampleClient_AllMessages() {
	c, err := client.New("https://127.0.0.1:8443", "token from DIR/admin.token")
	if err != nil {
		log.Fatal(err)
	}
	q := client.MessageQuery{Source: "0-BH7TSBOICJHKDUP4", Type: "DATA", Limit: 500}
	for m, err := range c.AllMessages(context.Background(), q) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.Seq, m.Received, string(m.Message))
	}
}

// Following new messages: poll with After = the previous answer's Next.
func ExampleClient_Messages() {
	c, err := client.New("https://127.0.0.1:8443", "token from DIR/admin.token")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// First the newest page, then what follows it. A real follower loops
	// until interrupted, sleeping between polls.
	q := client.MessageQuery{Source: "0-BH7TSBOICJHKDUP4"}
	for range 3 {
		list, err := c.Messages(ctx, q)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range list.Items {
			fmt.Println(m.Seq, string(m.Message))
		}
		q.After, q.Oldest = list.Next, true
	}
}
