package plugins

import (
	"context"
	"net/rpc"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// The handshake of iotnode plugins. The host passes the cookie in the
// plugin's environment; a plugin started without it (by hand) says that it
// is a plugin and exits with status 1. ProtocolVersion changes when the
// contract does (Plugin, Description or the wire encoding): a plugin and a
// host of different versions refuse each other at start with a clear error.
const (
	ProtocolVersion  = 1
	MagicCookieKey   = "IOTNODE_PLUGIN"
	MagicCookieValue = "7f3c9a1e5b2d4086a4c1e8f0b6d2937a"
)

// pluginName is the one plugin a plugin executable serves, in go-plugin's
// plugin set.
const pluginName = "device"

func handshake() goplugin.HandshakeConfig {
	return goplugin.HandshakeConfig{ProtocolVersion: ProtocolVersion, MagicCookieKey: MagicCookieKey, MagicCookieValue: MagicCookieValue}
}

// Description is what a plugin says of itself before it is used.
type Description struct {
	Name    string // the plugin's name, such as "acme-th100"
	Version string // the plugin's version, such as "1.2.0"
	// Readings are the names of the readings Read returns, such as
	// "temperature"; Outputs the outputs Actuate accepts. Names are
	// unique within each list, and a plugin has at least one of either.
	Readings []string
	Outputs  []string
}

// Plugin is what a vendor implements, and serves with Serve.
//
// Serve calls the methods one at a time, never concurrently, so an
// implementation needs no locking of its own. The contexts end at the
// host's deadline (a sample or a command has a few seconds at most): honour
// them, or the host stops waiting and reports a timeout while the call goes
// on. A panic ends the plugin process; the host reports that the plugin
// exited and starts it again later.
type Plugin interface {
	// Describe returns the plugin's name, version, readings and outputs.
	// It is called once per start, before anything else.
	Describe() Description
	// Read reads the sensor: at least one reading, each named as in
	// Description.Readings, with a value of type bool, int64, float64,
	// string or time.Time (times travel with millisecond precision), or
	// an error whose text the host logs.
	Read(ctx context.Context) ([]ports.Reading, error)
	// Actuate drives an output of Description.Outputs: args holds a
	// writable attribute's new value (one entry, "value") or an action's
	// arguments. The error's text goes back to the cloud as the reason the
	// request failed. A plugin without outputs returns an error.
	Actuate(ctx context.Context, output string, args map[string]model.Value) error
	// Close releases what the plugin holds. It is called once, when the
	// host closes the plugin or the connection ends; the process exits
	// after it.
	Close() error
}

// netrpcPlugin is the go-plugin glue: it serves a server on the plugin's
// side and makes an *rpc.Client on the host's.
type netrpcPlugin struct {
	server *server // nil on the host's side
}

func (p *netrpcPlugin) Server(*goplugin.MuxBroker) (any, error) { return p.server, nil }

func (p *netrpcPlugin) Client(_ *goplugin.MuxBroker, c *rpc.Client) (any, error) { return c, nil }

var _ goplugin.Plugin = (*netrpcPlugin)(nil)
