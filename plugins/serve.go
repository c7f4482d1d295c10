package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/iotnode/iotnode/plugins/internal/wire"
)

// lifelineEnv names the file descriptor of the lifeline: the read end of a
// pipe whose write end only the host holds. When the host dies, however it
// dies, the plugin reads end of file and exits, so that no orphan keeps the
// vendor's hardware busy when the node starts again.
const lifelineEnv = "IOTNODE_PLUGIN_LIFELINE"

// lifelineCloseTimeout bounds the wait for a running call and impl.Close
// when the host is gone.
const lifelineCloseTimeout = 5 * time.Second

// Serve serves impl to the host that started this executable; a vendor's
// main is one line:
//
//	func main() { plugins.Serve(acme.NewSensor()) }
//
// Serve returns when the host closes the plugin, after impl.Close; main
// should then return. Started by hand rather than by a host, the executable
// says that it is a plugin and exits with status 1. When the host dies
// without closing the plugin, Serve closes impl and exits the process with
// status 0.
func Serve(impl Plugin) {
	s := &server{impl: impl}
	if fd, err := strconv.Atoi(os.Getenv(lifelineEnv)); err == nil && fd > 2 {
		if f := os.NewFile(uintptr(fd), "lifeline"); f != nil {
			// Ends with the process: it exits when the host is gone.
			go func() {
				_, _ = io.Copy(io.Discard, f)
				closed := make(chan struct{})
				go func() {
					s.mu.Lock() // no call runs any more
					s.closeImpl()
					close(closed)
				}()
				select {
				case <-closed:
				case <-time.After(lifelineCloseTimeout): // a call that hangs
				}
				os.Exit(0)
			}()
		}
	}
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: handshake(),
		Plugins:         goplugin.PluginSet{pluginName: &netrpcPlugin{server: s}},
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeImpl()
}

// errClosed answers the calls after Close.
var errClosed = errors.New("the plugin is closed")

// server is the net/rpc service on the plugin's side. Its methods run one
// at a time (mu), as Plugin promises vendors.
type server struct {
	mu     sync.Mutex
	impl   Plugin
	closed bool
	err    error // of impl.Close
}

// closeImpl closes impl once; mu is held.
func (s *server) closeImpl() error {
	if !s.closed {
		s.closed = true
		s.err = s.impl.Close()
	}
	return s.err
}

// callContext is the context of one call: it ends after timeout, the time
// the host had left (none when 0).
func callContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeout(context.Background(), timeout)
	}
	return context.WithCancel(context.Background())
}

// Describe is the Describe call.
func (s *server) Describe(_ wire.Empty, reply *wire.Description) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	d := s.impl.Describe()
	*reply = wire.Description{Name: d.Name, Version: d.Version, Readings: d.Readings, Outputs: d.Outputs}
	return nil
}

// Read is the Read call.
func (s *server) Read(args wire.ReadArgs, reply *wire.ReadReply) error {
	ctx, cancel := callContext(args.Timeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	readings, err := s.impl.Read(ctx)
	if err != nil {
		return err
	}
	reply.Readings = make([]wire.Reading, len(readings))
	for i, r := range readings {
		if reply.Readings[i], err = wire.EncodeReading(r); err != nil {
			return fmt.Errorf("the plugin returned %w", err)
		}
	}
	return nil
}

// Actuate is the Actuate call.
func (s *server) Actuate(args wire.ActuateArgs, _ *wire.Empty) error {
	ctx, cancel := callContext(args.Timeout)
	defer cancel()
	values, err := wire.DecodeArgs(args.Args)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return s.impl.Actuate(ctx, args.Output, values)
}

// Close is the Close call.
func (s *server) Close(_ wire.Empty, _ *wire.Empty) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeImpl()
}
