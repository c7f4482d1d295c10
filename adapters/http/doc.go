// Package http is the cloud transport over HTTPS (go-resty/resty/v2):
// token requests with JWT client assertions, activation, the messages call
// with long polling, device models, device policies and storage provisioning
// (protocol.md §1–§5, §7). It implements ports.Messenger, ports.Activator and
// ports.ModelSource, one attempt per call: retries belong to the dispatcher.
//
// Imports: the standard library, domain/, ports and third-party HTTP/JWT
// libraries. Never another adapter.
//
// Status: being built; this file fixes its place in the layout.
package http
