// Package activation holds the transport-independent part of device
// activation (protocol.md §2): the checks of the activation policy, the
// bodies of the direct and the indirect activation requests, with the proof
// of possession a direct activation signs, and the checks of the cloud's
// answer.
//
// The node activates over HTTPS (adapters/http) and over MQTT
// (adapters/mqtt) with the same JSON; both build and check it here, so that
// the bytes and every error text are defined once. The adapters keep what
// differs: paths and topics, how an answer is framed and decoded (each with
// its own decode errors), how a status maps to an error, whose credentials
// are used, and the policy's hash algorithm remembered between calls.
//
// Errors say what was wrong and what was expected; the adapters put the
// operation in front (ports.CloudError). A wrong request (Direct.Check,
// Direct.Body, Indirect.Body) or a wrong answer (Policy.Check,
// Answer.Result) is permanent: sending or reading it again gives the same
// error.
//
// The package is pure: it does no I/O, never logs, never reads the clock,
// needs no randomness and starts no goroutines. The private key never reaches
// it: a direct activation is signed by the caller's Sign function. Every
// function is safe for concurrent use as long as the caller's Sign is. It
// imports only the standard library.
package activation
