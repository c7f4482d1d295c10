// Package fsstore keeps the node's state in files: the provisioning file
// (trusted assets, rewritten atomically with mode 0600), the device-model
// store (dm-<URL-encoded URN>.json), the durable outbox and storage-object
// files. It implements ports.TrustStore, ports.ModelStore and ports.Outbox.
//
// Imports: the standard library, domain/, ports and the embedded database
// library. Never another adapter.
//
// Status: being built; this file fixes its place in the layout.
package fsstore
