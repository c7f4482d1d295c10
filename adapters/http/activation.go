package http

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/iotnode/iotnode/domain/activation"
	"github.com/iotnode/iotnode/ports"
)

// alreadyActivatedHint completes a 401 of the activation calls.
const alreadyActivatedHint = "the device may already be activated"

// Policy fetches the activation policy (protocol.md §2a): GET
// activation/policy?OSName=..&OSVersion=.. with an activation-scope token.
// It remembers the policy's hash algorithm for ActivateDirect.
//
// A 401 that survives the token refresh (Oracle: the device is already
// activated) gives an error wrapping ports.ErrUnauthorized.
func (c *Client) Policy(ctx context.Context) (ports.ActivationPolicy, error) {
	const op = "get activation policy"
	q := url.Values{"OSName": {c.osName}, "OSVersion": {c.osVersion}}
	rep, err := c.do(ctx, request{op: op, method: http.MethodGet, path: apiRoot + "/activation/policy", query: q.Encode(),
		scope: scopeActivation, timeout: c.timeout})
	if err != nil {
		return ports.ActivationPolicy{}, err
	}
	if !rep.ok() {
		return ports.ActivationPolicy{}, c.statusError(op, rep, alreadyActivatedHint)
	}
	var p activation.Policy
	if err := decodeJSON(op, rep, &p, activation.PolicyShape); err != nil {
		return ports.ActivationPolicy{}, err
	}
	if err := p.Check(); err != nil {
		return ports.ActivationPolicy{}, answerError(op, rep, "%w", err)
	}
	c.mu.Lock()
	c.hashAlg = p.HashAlgorithm
	c.mu.Unlock()
	return ports.ActivationPolicy(p), nil
}

// ActivateDirect activates the device (protocol.md §2b): POST
// activation/direct[?createDraft=false] with an activation-scope token and
// the body of activation.Direct.Body: its proof of possession is signed by
// req.Sign with the policy's hash algorithm (SHA256withRSA when Policy was
// not called). The answer must say ACTIVATED. Every cached token is dropped:
// the caller saves the endpoint ID and keys to the trust store, and the
// next call gets an RS256 token with them.
//
// A 401 that survives the token refresh (already activated) gives an error
// wrapping ports.ErrUnauthorized.
func (c *Client) ActivateDirect(ctx context.Context, req ports.DirectActivation) (ports.Activation, error) {
	const op = "activate directly"
	fail := func(err error) (ports.Activation, error) {
		return ports.Activation{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
	}
	d := activation.Direct(req)
	// A wrong request says so before the trust store is read.
	if err := d.Check(); err != nil {
		return fail(err)
	}
	id, err := c.identity(op, scopeActivation)
	if err != nil {
		return ports.Activation{}, err
	}
	c.mu.Lock()
	alg := c.hashAlg
	c.mu.Unlock()
	body, err := d.Body(id.id, id.secret, alg)
	if err != nil {
		return fail(err)
	}
	rep, err := c.do(ctx, request{op: op, method: http.MethodPost, path: apiRoot + "/activation/direct", query: c.draftQuery(),
		body: body, scope: scopeActivation, timeout: c.timeout})
	if err != nil {
		return ports.Activation{}, err
	}
	act, err := c.answer(op, rep)
	if err != nil {
		return ports.Activation{}, err
	}
	c.dropTokens()
	return act, nil
}

// ActivateIndirect activates one of a gateway's devices (protocol.md §2c):
// POST activation/indirect/device[?createDraft=false] with the gateway's
// token and the flat body of activation.Indirect.Body: hardwareId,
// deviceModels, the metadata keys at the top level, and signature (base64)
// when req.Signature is set. The metadata may not use the keys hardwareId,
// deviceModels or signature.
func (c *Client) ActivateIndirect(ctx context.Context, req ports.IndirectActivation) (ports.Activation, error) {
	op := fmt.Sprintf("activate device %q", req.HardwareID)
	data, err := activation.Indirect(req).Body()
	if err != nil {
		return ports.Activation{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
	}
	rep, err := c.do(ctx, request{op: op, method: http.MethodPost, path: apiRoot + "/activation/indirect/device", query: c.draftQuery(),
		body: data, scope: scopeDefault, timeout: c.timeout})
	if err != nil {
		return ports.Activation{}, err
	}
	return c.answer(op, rep)
}

func (c *Client) draftQuery() string {
	if c.allowDrafts {
		return ""
	}
	return "createDraft=false"
}

// answer reads the answer of an activation call.
func (c *Client) answer(op string, rep reply) (ports.Activation, error) {
	if !rep.ok() {
		return ports.Activation{}, c.statusError(op, rep, alreadyActivatedHint)
	}
	var a activation.Answer
	if err := decodeJSON(op, rep, &a, activation.AnswerShape); err != nil {
		return ports.Activation{}, err
	}
	r, err := a.Result()
	if err != nil {
		return ports.Activation{}, answerError(op, rep, "%w", err)
	}
	if r.CertificateErr != nil { // not needed by the clients (protocol.md §2b)
		c.log.Warn("ignoring the certificate of the activation answer", slog.String("endpoint_id", r.EndpointID), slog.Any("error", r.CertificateErr))
	}
	return ports.Activation{EndpointID: r.EndpointID, ActivationTime: r.ActivationTime, Certificate: r.Certificate}, nil
}
