// Package ports declares the interfaces the core needs from the outside
// world, in domain terms: the cloud (messages, activation, device models,
// device policies, storage objects), the outbox, the device-model store, the trusted-assets store, the clock,
// sensors and actuators.
//
// Each interface is a contract: the doc comment says whether a call blocks,
// whether it is safe for concurrent use, which errors it returns and who
// owns what is passed in or out. Adapters (adapters/*) implement them and
// prove it with the conformance suites in ports/porttest.
//
// Lifecycle methods (Close) are deliberately absent: the composition root
// that builds an adapter owns it and closes it through its concrete type.
//
// Imports: the standard library and domain/ only.
package ports
