package integration

// The proofs of issue 5 that need whole processes or a faulty network:
// kill -9 of a node while it sends guaranteed messages, and network faults
// between a device and the cloud.

import (
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/internal/faultnet"
)

// killLoopSize is N and the least number of kills of the kill -9 proof:
// issue 5's 100,000 messages and 100 kills (about 70 s), and 300 kills with
// IOTNODE_LONG=1.
func killLoopSize() (n, minKills int) {
	if longRun() {
		return 100_000, 300
	}
	return 100_000, 100
}

// kill -9 loop: a sender process (testdata/killsender) sets N GUARANTEED
// DATA values through package client and its durable outbox, while the
// harness kills it with SIGKILL at random 50-500 ms intervals and starts it
// again, until it reports that all N were acknowledged. The cloud (iotcloud
// serve, another process) must then hold each of the N values exactly once,
// paging through the enterprise API.
//
//	go test -run TestKillLoopLosesNothing -v ./integration/                 # 100,000 messages, >= 100 kills
//	IOTNODE_LONG=1 go test -run TestKillLoopLosesNothing -v ./integration/  # 100,000, >= 300 kills
func TestKillLoopLosesNothing(t *testing.T) {
	n, minKills := killLoopSize()
	b := buildBinaries(t)
	c := startCloudProc(t, b, "debug") // debug: its "messages received" lines count the duplicates
	ctx := t.Context()
	modelJSON, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", "light_switch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.AddModel(ctx, modelJSON); err != nil {
		t.Fatal(err)
	}
	dev, err := c.client.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "killsender-1", Type: api.DeviceTypeDirect})
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.client.ProvisioningFile(ctx, dev.ID, api.ProvisioningFileRequest{Passphrase: passphrase})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	prov, data, progress := filepath.Join(dir, "device.prov"), filepath.Join(dir, "data"), filepath.Join(dir, "progress")
	if err := os.WriteFile(prov, file, 0o600); err != nil {
		t.Fatal(err)
	}
	// Activate here, once: activation rewrites the provisioning file (at a
	// low KDF cost, so the sender starts fast) and is not what this proof
	// is about. The model goes into the data directory's model store.
	d, err := client.NewDirectlyConnectedDevice(prov, passphrase, client.WithDataDir(data), client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Activate(ctx, lightURN); err != nil {
		t.Fatal(err)
	}
	endpoint := d.EndpointID()
	if _, err := d.DeviceModel(ctx, lightURN); err != nil {
		t.Fatal(err)
	}
	closeDevice(t, d)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	// Pace the sender so that sending N takes about two mean kill intervals
	// (275 ms) per kill wanted: a fast machine still gets its kills.
	rate := int(float64(n) / (float64(minKills) * 0.55))
	args := []string{"--prov", prov, "--data", data, "--progress", progress, "--n", fmt.Sprint(n), "--rate", fmt.Sprint(rate),
		"--cloud", c.url, "--token-file", filepath.Join(c.dir, "admin.token"), "--ca", filepath.Join(c.dir, "ca.pem")}
	env := []string{"IOTNODE_PASSPHRASE=" + passphrase}
	budget := 8 * time.Minute
	if longRun() {
		budget = 50 * time.Minute
	}
	var (
		kills, runs                     int
		backlog, retried, resolved      int
		corrupt, torn, maxProgressDelta int
		lastProgress                    int
		done                            map[string]int
	)
	start := time.Now()
	for done == nil {
		if time.Since(start) > budget {
			t.Fatalf("the sender did not finish within %s: %d runs, %d kills, progress %d of %d", budget, runs, kills, lastProgress, n)
		}
		runs++
		p := startProc(t, fmt.Sprintf("killsender run %d", runs), b.killsender, args, env, nil)
		p.setQuiet()
		interval := 50*time.Millisecond + time.Duration(rng.Int64N(int64(450*time.Millisecond)))
		code, _, exited := p.wait(interval)
		if !exited {
			p.kill()
			kills++
		} else if code != 0 {
			t.Fatalf("killsender run %d exited %d on its own:\n%s", runs, code, p.stderr())
		}
		// What this run reported before it ended.
		var last map[string]int
		for _, line := range p.stdout() {
			f := kv(line)
			switch {
			case strings.HasPrefix(line, "start "):
				backlog += f["backlog"]
				corrupt += f["corrupt"]
				torn += f["torn"]
			case strings.HasPrefix(line, "resume "):
				if f["cloud"] > f["progress"] {
					resolved++
				}
			case strings.HasPrefix(line, "stats "):
				last = f
			case strings.HasPrefix(line, "done "):
				last, done = f, f
			}
		}
		if last != nil {
			retried += last["retried"]
			maxProgressDelta = max(maxProgressDelta, last["progress"]-lastProgress)
			lastProgress = last["progress"]
		}
	}
	elapsed := time.Since(start)

	// Page through everything the cloud stored from the device.
	count := make([]int, n+1)
	stored, foreign := 0, 0
	for item, err := range c.client.AllMessages(ctx, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData), Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		stored++
		var m message.Message
		if err := json.Unmarshal(item.Message, &m); err != nil {
			t.Fatalf("stored message %s: %v", item.Message, err)
		}
		i := -1
		if s, ok := fields(&m)["label"].(string); ok {
			if _, err := fmt.Sscanf(s, "ks-%d", &i); err != nil {
				i = -1
			}
		}
		if i < 1 || i > n {
			foreign++
			continue
		}
		count[i]++
	}
	lost, dups := 0, 0
	var firstLost []int
	for i := 1; i <= n; i++ {
		switch {
		case count[i] == 0:
			lost++
			if len(firstLost) < 10 {
				firstLost = append(firstLost, i)
			}
		case count[i] > 1:
			dups += count[i] - 1
		}
	}
	cloudDups, cloudStored := 0, 0
	c.logs.each(func(l jsonLog) {
		if l.str("msg") == "messages received" && l.str("endpoint_id") == endpoint {
			cloudDups += int(l.num("duplicates"))
			cloudStored += int(l.num("stored"))
		}
	})

	t.Logf("kill -9 loop (seed %d): %d messages paced at %d/s, %d runs, %d SIGKILLs in %s; cloud stored %d DATA messages: %d lost, %d duplicates, %d foreign",
		seed, n, rate, runs, kills, elapsed.Round(time.Millisecond), stored, lost, dups, foreign)
	t.Logf("re-sent transmissions: the cloud recognised and skipped %d already-stored messages (clientId replay) and stored %d (all types); "+
		"the outbox replays at the starts held %d messages in all; the sender's retry counters (last report of each run) sum to %d; "+
		"%d restarts found message progress+1 at the cloud (on disk before the kill, progress not yet written); outbox records found corrupt %d, torn %d; "+
		"most messages in one run %d; the last run's counters %v",
		cloudDups, cloudStored, backlog, retried, resolved, corrupt, torn, maxProgressDelta, done)
	if lost != 0 || dups != 0 || foreign != 0 || stored != n {
		t.Errorf("the cloud holds %d messages for %d sent: %d lost (first: %v), %d duplicates, %d foreign; want each exactly once", stored, n, lost, firstLost, dups, foreign)
	}
	if kills < minKills {
		t.Errorf("%d kills, want at least %d: the sender finished too fast for this proof", kills, minKills)
	}
	if cloudDups == 0 {
		t.Logf("note: no re-sent transmission reached the cloud twice in this run")
	}
}

// faultOn reports whether the network-fault proof injects fault: all of
// them, unless IOTNODE_FAULTS lists some (latency, bandwidth, reset,
// refuse, blackhole), to look at one at a time.
func faultOn(fault string) bool {
	list := os.Getenv("IOTNODE_FAULTS")
	return list == "" || slices.Contains(strings.Split(list, ","), fault)
}

// openFiles counts the process's open file descriptors (Linux; -1 where
// /proc/self/fd does not exist).
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

// provisionThrough registers a directly connected device on c and writes
// its provisioning file with the server URI of addr (the proxy), so that
// the device reaches the cloud through it. The cloud's certificate names
// 127.0.0.1, which the proxy's address is too.
func provisionThrough(t *testing.T, c *cloud, hardwareID, addr string) string {
	t.Helper()
	path := provision(t, c, api.DeviceTypeDirect, hardwareID)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := trust.Decode(file, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	a.ServerURI = "https://" + addr
	if file, err = trust.EncodeV2(a, passphrase, crand.Reader, trust.WithIterations(kdf)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Network faults between a device and the cloud, through a fault-injecting
// TCP proxy (internal/faultnet): latency, a bandwidth cap, connection
// resets, refused connections and a 30 s black hole, while the application
// raises GUARANTEED alerts and sets BEST_EFFORT values. The device runs with
// the default delivery settings (backoff cap 30 s, HTTP timeout 15 s, HTTP/2
// pings after 10 s, TLS handshake bound 5 s). Afterwards: every alert is at
// the cloud exactly once; the best-effort values missing at the cloud are
// exactly the outbox's drop count (a batch whose send failed is held and
// sent again as it is, never dropped, so nothing the cloud may have is
// counted as lost); after each fault the first successful send comes within
// the backoff cap + 1 s (the backoff counts from the start of the failed
// attempt, and every attempt ends within the transport's bounds, which are
// below the cap); goroutines and open files are back to their baseline once
// the device is closed.
// IOTNODE_FAULTS=latency,bandwidth,reset,refuse,blackhole picks faults.
//
//	go test -run TestNetworkFaults -v ./integration/
func TestNetworkFaults(t *testing.T) {
	const (
		backoffCap = device.DefaultBackoffCap
		latency    = 40 * time.Millisecond // each way
		bandwidth  = 32 << 10              // bytes/s per connection and direction
		memBytes   = 16 << 10              // the best-effort queue's bound: a black hole overflows it
		phase      = 2 * time.Second
		hole       = 30 * time.Second
	)
	c := startCloud(t)
	proxy, err := faultnet.Listen(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	path := provisionThrough(t, c, "faulty-light-1", proxy.Addr())

	c.Client().CloseIdleConnections()
	baseGoroutines, baseFiles := runtime.NumGoroutine(), openFiles()
	d, v := activated(t, path, lightURN,
		client.WithOutboxLimits(0, memBytes),
		client.WithDeviceOptions(device.WithMaxBatchBytes(8<<10)))
	endpoint := d.EndpointID()
	var asyncErrs atomic.Int64
	v.OnError(func(device.ErrorEvent) { asyncErrs.Add(1) })

	// The application: a best-effort value every 5 ms, a guaranteed alert
	// every 20 ms, until stop.
	var (
		beOK, beFailed, alertsOK, alertsFailed atomic.Int64
		stop                                   = make(chan struct{})
		wg                                     sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := v.Set("label", fmt.Sprintf("be-%07d", beOK.Load()+1)); err != nil {
				beFailed.Add(1)
			} else {
				beOK.Add(1)
			}
			if i%4 == 0 {
				if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", alertsOK.Load()+1).Raise(); err != nil {
					alertsFailed.Add(1)
				} else {
					alertsOK.Add(1)
				}
			}
		}
	})
	defer func() { // on an early failure too
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// firstSend waits for the first message the cloud acknowledges after
	// the fault ended at end, and returns how long after end it came.
	firstSend := func(what string, end time.Time) time.Duration {
		t.Helper()
		sent := d.Stats().Sent
		if !eventually(t.Context(), waitFor, func() bool { return d.Stats().Sent > sent }) {
			t.Fatalf("%s: nothing was sent within %s after the fault ended", what, waitFor)
		}
		return time.Since(end)
	}
	type figure struct {
		fault              string
		recovery           time.Duration // -1: not an outage
		sent, dropped, ret uint64
		lastBE             int // the last best-effort value set by then
	}
	var figures []figure
	record := func(fault string, recovery time.Duration) {
		s := d.Stats()
		figures = append(figures, figure{fault, recovery, s.Sent, uint64(d.OutboxStats().Dropped), s.Retried, int(beOK.Load())})
	}
	wait := func(dur time.Duration) {
		select {
		case <-time.After(dur): // the fault's duration: the proxy's knobs are set for this long
		case <-t.Context().Done():
		}
	}

	wait(time.Second)
	record("none", -1)

	if faultOn("latency") {
		proxy.SetLatency(faultnet.Upstream, latency)
		proxy.SetLatency(faultnet.Downstream, latency)
		wait(phase)
		proxy.SetLatency(faultnet.Upstream, 0)
		proxy.SetLatency(faultnet.Downstream, 0)
		record(fmt.Sprintf("latency %s each way, %s", latency, phase), -1)
	}
	if faultOn("bandwidth") {
		proxy.SetBandwidth(bandwidth)
		wait(phase)
		proxy.SetBandwidth(0)
		record(fmt.Sprintf("bandwidth %d B/s, %s", bandwidth, phase), -1)
	}
	if faultOn("reset") {
		resets := 0
		for end := time.Now().Add(phase); time.Now().Before(end); {
			resets += proxy.ResetAll()
			wait(200 * time.Millisecond)
		}
		resets += proxy.ResetAll()
		record(fmt.Sprintf("resets every 200 ms for %s (%d conns)", phase, resets), firstSend("resets", time.Now()))
	}
	if faultOn("refuse") {
		if err := proxy.Refuse(true); err != nil {
			t.Fatal(err)
		}
		wait(phase)
		if err := proxy.Refuse(false); err != nil {
			t.Fatal(err)
		}
		record(fmt.Sprintf("connections refused for %s", phase), firstSend("refused", time.Now()))
	}
	if faultOn("blackhole") {
		proxy.BlackHole(0)
		wait(hole)
		proxy.ClearBlackHole()
		record(fmt.Sprintf("black hole for %s", hole), firstSend("black hole", time.Now()))
	}

	wait(time.Second)
	close(stop)
	wg.Wait()
	if !eventually(t.Context(), 30*time.Second, func() bool { return d.OutboxStats().Queued == 0 }) {
		t.Fatalf("the outbox did not drain within 30 s after the faults: %+v", d.OutboxStats())
	}
	stats, ostats := d.Stats(), d.OutboxStats()
	closeDevice(t, d)
	pstats := proxy.Stats()
	if err := proxy.Close(); err != nil {
		t.Error(err)
	}

	// What the cloud holds.
	var alerts, beStored []int
	beDup, alertDup := 0, 0
	seenBE, seenAlert := map[int]bool{}, map[int]bool{}
	for item, err := range c.Client().AllMessages(t.Context(), cloudclient.MessageQuery{Source: endpoint, Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		var m message.Message
		if err := json.Unmarshal(item.Message, &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Alert != nil:
			j, _ := strconv.Atoi(fmt.Sprint(fields(&m)["presses"]))
			if seenAlert[j] {
				alertDup++
			}
			seenAlert[j] = true
			alerts = append(alerts, j)
		case m.Data != nil:
			s, _ := fields(&m)["label"].(string)
			i, err := strconv.Atoi(strings.TrimPrefix(s, "be-"))
			if !strings.HasPrefix(s, "be-") || err != nil {
				continue
			}
			if seenBE[i] {
				beDup++
			}
			seenBE[i] = true
			beStored = append(beStored, i)
		}
	}
	c.Client().CloseIdleConnections()
	nAlerts, nBE := int(alertsOK.Load()), int(beOK.Load())
	alertsLost := 0
	for j := 1; j <= nAlerts; j++ {
		if !seenAlert[j] {
			alertsLost++
		}
	}
	beLost := nBE - len(seenBE)

	from := 1
	for _, f := range figures {
		rec := "-"
		if f.recovery >= 0 {
			rec = f.recovery.Round(time.Millisecond).String()
		}
		missing := 0
		for i := from; i <= f.lastBE; i++ {
			if !seenBE[i] {
				missing++
			}
		}
		t.Logf("after %-42s first send after it %-7s sent %5d, dropped %4d, retried %4d; best-effort values %d-%d: %d not at the cloud",
			f.fault+":", rec, f.sent, f.dropped, f.ret, from, f.lastBE, missing)
		from = f.lastBE + 1
	}
	t.Logf("guaranteed: %d alerts raised (%d refused), %d at the cloud, %d lost, %d duplicates", nAlerts, alertsFailed.Load(), len(seenAlert), alertsLost, alertDup)
	t.Logf("best effort: %d values set (%d refused), %d at the cloud, %d lost, %d duplicates; outbox drop counter %d (%d of them dropped after a failed send), device drop counter %d",
		nBE, beFailed.Load(), len(seenBE), beLost, beDup, ostats.Dropped, ostats.DroppedUnconfirmed, stats.Dropped)
	t.Logf("device: queued %d, sent %d, retried %d, protocol errors %d, dead-lettered %d, OnError events %d; proxy: %d connections, %d reset, %d bytes up, %d down, %d swallowed",
		stats.Queued, stats.Sent, stats.Retried, stats.ProtocolErrors, stats.DeadLettered, asyncErrs.Load(),
		pstats.Accepted, pstats.Resets, pstats.BytesUpstream, pstats.BytesDownstream, pstats.Dropped)

	if alertsLost != 0 || alertDup != 0 || len(seenAlert) != nAlerts || alertsFailed.Load() != 0 {
		t.Errorf("guaranteed: %d raised (%d refused), %d at the cloud, %d lost, %d duplicates; want all, once each", nAlerts, alertsFailed.Load(), len(seenAlert), alertsLost, alertDup)
	}
	if int64(beLost) != ostats.Dropped || ostats.DroppedUnconfirmed != 0 || beDup != 0 {
		t.Errorf("best effort: %d lost and %d duplicates; outbox Dropped %d (%d after a failed send): want lost == Dropped, none dropped after a failed send, no duplicates",
			beLost, beDup, ostats.Dropped, ostats.DroppedUnconfirmed)
	}
	if ostats.Dropped == 0 && faultOn("blackhole") {
		t.Errorf("no best-effort value was dropped: the black hole should overflow the %d-byte queue", memBytes)
	}
	for _, f := range figures {
		if f.recovery > backoffCap+time.Second {
			t.Errorf("after %s the first successful send came %s after the fault ended, want at most the backoff cap %s + 1s", f.fault, f.recovery, backoffCap)
		}
	}
	var goroutines, files int
	ok := eventually(t.Context(), 10*time.Second, func() bool {
		goroutines, files = runtime.NumGoroutine(), openFiles()
		return goroutines <= baseGoroutines && files <= baseFiles
	})
	t.Logf("after Close: %d goroutines (baseline %d), %d open files (baseline %d)", goroutines, baseGoroutines, files, baseFiles)
	if !ok {
		t.Errorf("after Close: %d goroutines and %d open files, want at most the baseline %d and %d", goroutines, files, baseGoroutines, baseFiles)
	}
}
