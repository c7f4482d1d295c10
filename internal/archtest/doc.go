// Package archtest enforces the project's dependency rule (docs/architecture.md):
//
//		domain  <-  ports  <-  device  <-  adapters/*, plugins/  <-  cmd/*
//
//	  - domain/... imports only the standard library, other domain packages and
//	    the (empty) allow-list of pure third-party libraries below, and none of
//	    the standard packages that do I/O or logging (os, net, log, syscall...);
//	  - ports imports only domain (ports/porttest may also import ports and testing);
//	  - device imports only domain and ports (plus the standard library);
//	  - no adapter imports another adapter, device, cloud or cmd;
//	  - cloud may reuse domain but not ports, device, adapters or cmd;
//	  - github.com/knadh/koanf appears only under cmd/;
//	  - nothing imports cmd/ or integration/.
//
// The rule is checked by TestDependencyRule, which parses the imports of
// every Go file of the module (no build, no network). It is plain Go so it
// runs with `go test ./...` everywhere.
package archtest
