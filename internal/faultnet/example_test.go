package faultnet_test

import (
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/iotnode/iotnode/internal/faultnet"
)

func ExampleListen() {
	// A server to put behind the proxy: it says hello and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello"))
			_ = c.Close()
		}
	}()

	p, err := faultnet.Listen(ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close() // waits for the proxy's goroutines

	p.SetLatency(faultnet.Downstream, 50*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	b, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	_ = c.Close()
	fmt.Println(string(b), time.Since(start) >= 50*time.Millisecond)

	// While refusing, connecting fails at once.
	if err := p.Refuse(true); err != nil {
		log.Fatal(err)
	}
	_, err = net.Dial("tcp", p.Addr())
	fmt.Println(err != nil)

	fmt.Println(p.Stats().BytesDownstream)
	_ = ln.Close()
	<-done
	// Output:
	// hello true
	// true
	// 5
}
