// Command killsender is the node of the kill -9 proof (integration
// TestKillLoopLosesNothing): a directly connected device, opened through
// package client with its durable outbox, that sets the light switch's
// "label" attribute to ks-0000001 ... ks-N as GUARANTEED_DELIVERY DATA, one
// Set after the other. The harness kills it with SIGKILL at random moments
// and starts it again until it prints "done".
//
// Progress: after each Set returned (the message is on disk in the
// outbox), the sequence number is written to the progress file. The write
// is not fsynced unless --sync-progress: a completed write(2) survives
// SIGKILL (the page cache belongs to the kernel), and a power loss is the
// power-loss proof's business, not this one's.
//
// A kill between a Set that returned (or whose record reached the disk
// before the kill) and the progress write leaves one message ambiguous:
// the application cannot tell whether message progress+1 was queued. Sending
// it again would give it a new clientId, a duplicate the cloud cannot
// recognise; skipping it would lose it if it was not queued. So at start
// the sender first lets the outbox drain (the replay sends what the last run
// queued), then asks the cloud (enterprise API) for the newest sequence
// number it stored, and resumes after the larger of the two. That check
// can only raise the starting point: a message the outbox lost below the
// progress is still missing at the end, which is what the harness counts.
//
// Standard output, one line each: "start ..." with the outbox's backlog
// (messages the replay sends again), "stats ..." every --stats-every, and
// "done ..." after the last message was acknowledged. --rate paces the
// sends, so that a run lasts long enough for the harness's kills.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/client"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

const lightURN = "urn:com:example:iot:device:light_switch"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "killsender:", err)
		os.Exit(1)
	}
}

// label is the value that carries sequence number i.
func label(i int) string { return fmt.Sprintf("ks-%07d", i) }

// parseLabel returns the sequence number of a label, or false.
func parseLabel(s string) (int, bool) {
	n, ok := strings.CutPrefix(s, "ks-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

func run() error {
	var (
		prov, dataDir, progressPath string
		cloudURL, tokenFile, caFile string
		n, rate                     int
		statsEvery, backoffCap      time.Duration
		syncProgress                bool
	)
	flag.StringVar(&prov, "prov", "", "the activated device's provisioning file")
	flag.StringVar(&dataDir, "data", "", "the device's data directory (outbox, models)")
	flag.StringVar(&progressPath, "progress", "", "the progress file")
	flag.StringVar(&cloudURL, "cloud", "", "the cloud's URL (enterprise API)")
	flag.StringVar(&tokenFile, "token-file", "", "the enterprise API's token")
	flag.StringVar(&caFile, "ca", "", "the cloud's CA certificate (PEM)")
	flag.IntVar(&n, "n", 10000, "the number of messages")
	flag.IntVar(&rate, "rate", 0, "send at most this many messages per second (0: as fast as Set returns)")
	flag.DurationVar(&statsEvery, "stats-every", 100*time.Millisecond, "how often to print the counters")
	flag.DurationVar(&backoffCap, "backoff-cap", time.Second, "the device's backoff cap")
	flag.BoolVar(&syncProgress, "sync-progress", false, "fsync the progress file after every write")
	flag.Parse()
	pass := os.Getenv("IOTNODE_PASSPHRASE")
	if prov == "" || dataDir == "" || progressPath == "" || cloudURL == "" || pass == "" {
		return errors.New("usage: IOTNODE_PASSPHRASE=... killsender --prov FILE --data DIR --progress FILE --cloud URL --token-file F --ca F [--n N]")
	}
	ctx := context.Background()

	pf, err := os.OpenFile(progressPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer pf.Close()
	progress, err := readProgress(pf)
	if err != nil {
		return err
	}

	d, err := client.NewDirectlyConnectedDevice(prov, pass,
		client.WithDataDir(dataDir),
		client.WithKDFIterations(trust.MinIterations),
		client.WithHTTPTimeout(5*time.Second),
		client.WithDeviceOptions(
			device.WithDataQoS(message.PriorityLow, message.GuaranteedDelivery),
			device.WithBackoff(50*time.Millisecond, backoffCap),
		))
	if err != nil {
		return err
	}
	defer d.Close(context.Background())
	if !d.IsActivated() {
		return fmt.Errorf("%s is not activated: the harness activates it first", prov)
	}
	st := d.OutboxStats()
	fmt.Printf("start progress=%d backlog=%d guaranteed=%d corrupt=%d torn=%d\n", progress, st.Queued, st.Guaranteed, st.Corrupt, st.Torn)
	m, err := d.DeviceModel(ctx, lightURN)
	if err != nil {
		return err
	}
	v, err := d.CreateVirtualDevice(d.EndpointID(), m)
	if err != nil {
		return err
	}
	v.OnError(func(ev device.ErrorEvent) {
		fmt.Fprintf(os.Stderr, "killsender: OnError: %v (%d messages)\n", ev.Err, len(ev.Messages))
	})

	last := time.Now()
	printStats := func(what string, i int) {
		s, o := d.Stats(), d.OutboxStats()
		fmt.Printf("%s progress=%d queued=%d sent=%d retried=%d protocol_errors=%d dead=%d outbox=%d commits=%d\n",
			what, i, s.Queued, s.Sent, s.Retried, s.ProtocolErrors, s.DeadLettered, o.Queued, o.Commits)
		last = time.Now()
	}
	drain := func(i int) {
		for d.OutboxStats().Queued > 0 {
			if time.Since(last) >= statsEvery {
				printStats("stats", i)
			}
			time.Sleep(5 * time.Millisecond) // a test program polling a counter
		}
	}

	// Resolve the one message a kill may have left ambiguous.
	drain(progress)
	cloudMax, err := newestAtCloud(ctx, cloudURL, tokenFile, caFile, d.EndpointID())
	if err != nil {
		return err
	}
	start := progress
	if cloudMax > progress {
		start = cloudMax
	}
	fmt.Printf("resume progress=%d cloud=%d from=%d\n", progress, cloudMax, start+1)

	paced := time.Now()
	for i := start + 1; i <= n; i++ {
		if rate > 0 {
			// Pace this run: message k of it goes out k/rate after its start.
			if wait := time.Until(paced.Add(time.Duration(i-start-1) * time.Second / time.Duration(rate))); wait > 0 {
				time.Sleep(wait)
			}
		}
		for {
			err := v.Set("label", label(i))
			if err == nil {
				break
			}
			if !errors.Is(err, ports.ErrOutboxFull) {
				return fmt.Errorf("message %d: %w", i, err)
			}
			time.Sleep(10 * time.Millisecond) // back-pressure: the outbox is full
		}
		if err := writeProgress(pf, i, syncProgress); err != nil {
			return err
		}
		if time.Since(last) >= statsEvery {
			printStats("stats", i)
		}
	}
	drain(n)
	printStats("done", n)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.Close(cctx)
}

// readProgress reads the last sequence number written (0 for a new file).
func readProgress(f *os.File) (int, error) {
	b := make([]byte, 20)
	k, err := f.ReadAt(b, 0)
	if k == 0 {
		return 0, nil
	}
	s := strings.TrimSpace(string(b[:k]))
	i, perr := strconv.Atoi(s)
	if perr != nil {
		return 0, fmt.Errorf("progress file %s holds %q: %v (read error %v)", f.Name(), s, perr, err)
	}
	return i, nil
}

// writeProgress overwrites the progress file with i in one fixed-size write.
func writeProgress(f *os.File, i int, sync bool) error {
	if _, err := f.WriteAt(fmt.Appendf(nil, "%019d\n", i), 0); err != nil {
		return err
	}
	if sync {
		return f.Sync()
	}
	return nil
}

// newestAtCloud returns the largest sequence number among the newest DATA
// messages the cloud stored from endpoint (0 when none).
func newestAtCloud(ctx context.Context, url, tokenFile, caFile, endpoint string) (int, error) {
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return 0, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return 0, fmt.Errorf("%s holds no certificate", caFile)
	}
	cl, err := cloudclient.New(url, strings.TrimSpace(string(token)), cloudclient.WithCAPool(pool))
	if err != nil {
		return 0, err
	}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := cl.Messages(ctx, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData), Limit: 50})
	if err != nil {
		return 0, err
	}
	best := 0
	for _, item := range list.Items {
		var msg message.Message
		if err := json.Unmarshal(item.Message, &msg); err != nil || msg.Data == nil {
			continue
		}
		for _, f := range msg.Data.Fields {
			if f.Name != "label" {
				continue
			}
			if s, ok := f.Value.(string); ok {
				if i, ok := parseLabel(s); ok && i > best {
					best = i
				}
			}
		}
	}
	return best, nil
}
