// Package integration holds the end-to-end tests: the node and the
// reference cloud talking over real HTTPS and MQTT on loopback, with faults,
// crashes and restarts. It may import every package of the module; nothing
// imports it.
//
// Every test starts its own cloud in-process (cloud/launch, TLS with the
// cloud's own CA, a data directory under t.TempDir, a free loopback port) and
// provisions its devices through the enterprise API, so tests run in
// parallel with nothing installed. The cloud's clock is a test clock that
// can be moved forward (token expiry), and a cloud can be stopped and
// started again on the same address (outages, restarts).
//
// Most devices are built through package client, the library's front door;
// the token tests build one from the adapters by hand (device.Config), with
// a recording HTTP transport and a movable clock injected.
//
// Figures (cloud-set -> OnChange latency, Set -> stored-at-cloud
// throughput), without -race:
//
//	IOTNODE_BENCH=1 go test -run TestLatencyAndThroughput -v ./integration/
//	go test -run '^$' -bench . -benchtime 1000x ./integration/
package integration
