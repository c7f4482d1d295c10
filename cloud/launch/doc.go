// Package launch starts a complete iotcloud — PKI, admin token, store, HTTPS
// server and, when asked, the MQTT broker or bridge — in the current process. It is the one place that wires the
// reference cloud together, used by `iotcloud serve`, by `iotnode demo` (the
// cloud in-process) and by integration tests, so that all three run the same
// cloud the same way.
//
// Everything lives in one data directory: the CA and server certificate
// (cloud/pki), admin.token (0600), the url file naming where the cloud
// listens, and whatever the cloud's store keeps there. Starting again on the
// same directory gives the same CA, token and data.
//
// Shutdown stops in order: HTTP (long polls drained), then MQTT (publishes
// being handled finish, pushes stop), then the store.
//
// It imports the standard library, cloud, cloud/pki, cloud/client,
// cloud/mqttbroker and cloud/api.
package launch
