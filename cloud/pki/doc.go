// Package pki gives iotcloud its own small certificate authority, so that TLS
// is on by default with nothing installed and no certificate bought.
//
// Ensure creates, on first use, a CA and a server certificate signed by it in
// a data directory, and reuses them on later starts. The CA certificate is the
// trust anchor that the cloud writes into every provisioning file (tag 5 of
// protocol.md §6), so devices — ours and Oracle's own client libraries —
// trust a self-hosted cloud with no other setup. The CA therefore never changes
// once created: only the server certificate is re-issued (when it lacks a
// requested host name or is close to expiry).
//
// The CA key is RSA (CAKeyBits): Oracle's JS device library reads the trust
// anchors of its provisioning file with node-forge, which accepts RSA
// certificates only. The server key is ECDSA P-256 (cheaper handshakes; Go,
// Node's TLS, Java and Python all accept it under an RSA CA). Private keys are
// written 0600, certificates 0644, the directory 0700 when created.
//
// It imports only the standard library.
package pki
