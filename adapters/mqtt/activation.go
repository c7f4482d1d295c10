package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/iotnode/iotnode/domain/activation"
	"github.com/iotnode/iotnode/ports"
)

// alreadyActivatedHint completes a 401 of the activation calls.
const alreadyActivatedHint = "the device may already be activated"

// Policy fetches the activation policy (protocol.md §2a) on
// iotcs/{activation ID}/activation/policy with {"OSName","OSVersion"},
// connected as the activation ID with the shared secret. It remembers the
// policy's hash algorithm for ActivateDirect.
//
// A refused connection (Oracle: the device is already activated, so its
// shared secret is no longer accepted) or a 401 error answer gives an
// error wrapping ports.ErrUnauthorized.
func (c *Client) Policy(ctx context.Context) (ports.ActivationPolicy, error) {
	const op = "get activation policy"
	body, _ := json.Marshal(struct {
		OSName    string `json:"OSName"`
		OSVersion string `json:"OSVersion"`
	}{c.osName, c.osVersion})
	payload, err := c.call(ctx, op, roleActivation, pathPolicy, body, alreadyActivatedHint)
	if err != nil {
		return ports.ActivationPolicy{}, err
	}
	var p activation.Policy
	if err := decodeJSON(op, payload, &p, activation.PolicyShape); err != nil {
		return ports.ActivationPolicy{}, err
	}
	if err := p.Check(); err != nil {
		return ports.ActivationPolicy{}, answerError(op, "%w", err)
	}
	c.mu.Lock()
	c.hashAlg = p.HashAlgorithm
	c.mu.Unlock()
	return ports.ActivationPolicy(p), nil
}

// ActivateDirect activates the device (protocol.md §2b) on
// iotcs/{activation ID}/activation/direct, connected as the activation ID,
// with the body of the HTTPS call (activation.Direct.Body): its proof of
// possession is signed by req.Sign with the policy's hash algorithm
// (SHA256withRSA when Policy was not called). The answer must say
// ACTIVATED. The client then disconnects: the caller saves the endpoint ID
// and keys to the trust store, and the next call connects as the endpoint
// ID with an RS256 password.
//
// A refused connection or a 401 error answer (already activated) gives an
// error wrapping ports.ErrUnauthorized.
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
	id, err := c.identity(op, roleActivation)
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
	payload, err := c.call(ctx, op, roleActivation, pathDirect, body, alreadyActivatedHint)
	if err != nil {
		return ports.Activation{}, err
	}
	act, err := c.answer(op, payload)
	if err != nil {
		return ports.Activation{}, err
	}
	c.dropConn(roleActivation)
	c.log.Info("activated: the next call connects as the endpoint ID", slog.String("endpoint_id", act.EndpointID))
	return act, nil
}

// dropConn disconnects the current connection if it speaks for r.
func (c *Client) dropConn(r role) {
	c.mu.Lock()
	cn := c.cur
	if cn == nil || cn.role != r {
		c.mu.Unlock()
		return
	}
	c.cur = nil
	c.mu.Unlock()
	cn.disconnect()
}

// ActivateIndirect activates one of a gateway's devices (protocol.md §2c)
// on iotcs/{gateway endpoint ID}/activation/indirect/device, connected as
// the gateway, with the flat body of the HTTPS call
// (activation.Indirect.Body): hardwareId, deviceModels, the metadata keys at
// the top level, and signature (base64) when req.Signature is set. The
// metadata may not use the keys hardwareId, deviceModels or signature.
func (c *Client) ActivateIndirect(ctx context.Context, req ports.IndirectActivation) (ports.Activation, error) {
	op := fmt.Sprintf("activate device %q", req.HardwareID)
	data, err := activation.Indirect(req).Body()
	if err != nil {
		return ports.Activation{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
	}
	payload, err := c.call(ctx, op, roleEndpoint, pathIndirect, data, alreadyActivatedHint)
	if err != nil {
		return ports.Activation{}, err
	}
	return c.answer(op, payload)
}

// answer reads the answer of an activation call.
func (c *Client) answer(op string, payload []byte) (ports.Activation, error) {
	var a activation.Answer
	if err := decodeJSON(op, payload, &a, activation.AnswerShape); err != nil {
		return ports.Activation{}, err
	}
	r, err := a.Result()
	if err != nil {
		return ports.Activation{}, answerError(op, "%w", err)
	}
	if r.CertificateErr != nil { // not needed by the clients (protocol.md §2b)
		c.log.Warn("ignoring the certificate of the activation answer", slog.String("endpoint_id", r.EndpointID), slog.Any("error", r.CertificateErr))
	}
	return ports.Activation{EndpointID: r.EndpointID, ActivationTime: r.ActivationTime, Certificate: r.Certificate}, nil
}
