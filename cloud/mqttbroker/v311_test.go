package mqttbroker_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"testing"
	"time"

	mochipk "github.com/mochi-mqtt/server/v2/packets"
)

// client311 is just enough of an MQTT 3.1.1 client for one exchange, built
// on mochi's packet codec (paho.golang speaks MQTT 5 only).
type client311 struct {
	t    *testing.T
	conn *tls.Conn
	r    *bufio.Reader
}

func dial311(t *testing.T, d *device) *client311 {
	t.Helper()
	conn, err := tls.Dial("tcp", d.broker.Host, d.tls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitFor))
	c := &client311{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.send(mochipk.Packet{FixedHeader: mochipk.FixedHeader{Type: mochipk.Connect}, ProtocolVersion: 4,
		Connect: mochipk.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: d.id(),
			UsernameFlag: true, Username: []byte(d.id()), PasswordFlag: true, Password: d.assertion()}})
	if ack := c.next(); ack.FixedHeader.Type != mochipk.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	return c
}

func (c *client311) send(pk mochipk.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case mochipk.Connect:
		err = pk.ConnectEncode(&buf)
	case mochipk.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case mochipk.Publish:
		err = pk.PublishEncode(&buf)
	case mochipk.Puback:
		err = pk.PubackEncode(&buf)
	case mochipk.Disconnect:
		err = pk.DisconnectEncode(&buf)
	}
	if err == nil {
		_, err = c.conn.Write(buf.Bytes())
	}
	if err != nil {
		c.t.Fatalf("send %v: %v", pk.FixedHeader.Type, err)
	}
}

// next reads one packet, acknowledging a QoS 1 publish.
func (c *client311) next() mochipk.Packet {
	c.t.Helper()
	hb, err := c.r.ReadByte()
	var pk mochipk.Packet
	if err == nil {
		err = pk.FixedHeader.Decode(hb)
	}
	var n int
	if err == nil {
		n, _, err = mochipk.DecodeLength(c.r)
	}
	body := make([]byte, n)
	if err == nil {
		_, err = io.ReadFull(c.r, body)
	}
	pk.ProtocolVersion = 4
	if err == nil {
		switch pk.FixedHeader.Type {
		case mochipk.Connack:
			err = pk.ConnackDecode(body)
		case mochipk.Suback:
			err = pk.SubackDecode(body)
		case mochipk.Publish:
			err = pk.PublishDecode(body)
		case mochipk.Puback:
			err = pk.PubackDecode(body)
		}
	}
	if err != nil {
		c.t.Fatalf("read a packet: %v", err)
	}
	if pk.FixedHeader.Type == mochipk.Publish && pk.FixedHeader.Qos == 1 {
		c.send(mochipk.Packet{FixedHeader: mochipk.FixedHeader{Type: mochipk.Puback}, PacketID: pk.PacketID})
	}
	return pk
}
