// Package client is a small Go client for iotcloud's enterprise REST API (the
// admin side, authenticated with the bearer token of DIR/admin.token): device
// models, device registration and provisioning files, messages, attribute
// sets and action calls with their request status, and device policies.
//
// It is used by the iotcloud CLI, by iotnode demo and by the integration
// tests. It speaks plain net/http, sends each call once (no retries: the
// caller decides) and maps every non-2xx answer to an *APIError carrying the
// server's message, so that a CLI can show it as is.
//
// It imports the standard library and cloud/api only.
package client
