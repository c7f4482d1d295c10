package device

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// Key sizes Activate accepts from an activation policy.
const (
	minKeyBits = 2048
	maxKeyBits = 8192
)

// Activate activates the device with the cloud (protocol.md §2) and
// declares the device models it implements:
//
//  1. it asks for the activation policy;
//  2. it makes an RSA key of the policy's size (2048 to 8192 bits);
//  3. it activates with the public key, a proof signed with the private key
//     (the policy's hash algorithm: SHA256withRSA, SHA384withRSA or
//     SHA512withRSA), and modelURNs plus the capability URNs
//     direct_activation, device_policy, indirect_activation (a gateway only),
//     message_dispatcher and diagnostics;
//  4. it saves the endpoint ID, the private key (PKCS#8 DER) and the public
//     key (SubjectPublicKeyInfo DER) to the trust store.
//
// It fails when the device is already activated (IsActivated), when it is
// closed, when the policy asks for another key type, and on any cloud or
// store error (wrapped, with the step). If the cloud activated the device
// but the trust store could not save the result, the error says so: the
// cloud then regards the device as activated and the provisioning file
// must be made again. Calls are serialised; a waiting call honours ctx.
func (d *DirectlyConnectedDevice) Activate(ctx context.Context, modelURNs ...string) error {
	const op = "activate"
	select {
	case d.activating <- struct{}{}:
		defer func() { <-d.activating }()
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	d.mu.Lock()
	closed, endpoint := d.closed, d.endpoint
	d.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%s: %w", op, ErrClosed)
	case endpoint != "":
		return fmt.Errorf("%s: the device is already activated as endpoint %q", op, endpoint)
	}
	urns, err := d.activationURNs(modelURNs)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}

	policy, err := d.cfg.Activator.Policy(ctx)
	if err != nil {
		return fmt.Errorf("%s: get activation policy: %w", op, err)
	}
	if !strings.EqualFold(policy.KeyType, "RSA") {
		return fmt.Errorf("%s: the activation policy asks for a %q key, expected RSA", op, policy.KeyType)
	}
	if policy.KeySize < minKeyBits || policy.KeySize > maxKeyBits {
		return fmt.Errorf("%s: the activation policy asks for a %d-bit key, expected %d to %d bits", op, policy.KeySize, minKeyBits, maxKeyBits)
	}
	hash, err := signatureHash(policy.HashAlgorithm)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	key, err := d.set.genKey(policy.KeySize)
	if err != nil {
		return fmt.Errorf("%s: generate a %d-bit RSA key: %w", op, policy.KeySize, err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("%s: encode the public key: %w", op, err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: encode the private key: %w", op, err)
	}
	act, err := d.cfg.Activator.ActivateDirect(ctx, ports.DirectActivation{
		PublicKey: pub,
		Sign:      rsaSigner(key, hash),
		ModelURNs: urns,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if act.EndpointID == "" {
		return fmt.Errorf("%s: the cloud answered without an endpoint ID", op)
	}

	assets, err := d.cfg.Trust.Load()
	if err == nil {
		assets.EndpointID, assets.PrivateKey, assets.PublicKey = act.EndpointID, priv, pub
		err = d.cfg.Trust.Save(assets)
	}
	if err != nil {
		return fmt.Errorf("%s: the cloud activated endpoint %q but saving it to the trust store failed (the provisioning file must be made again): %w",
			op, act.EndpointID, err)
	}
	d.mu.Lock()
	d.endpoint = act.EndpointID
	d.mu.Unlock()
	d.log.Info("device activated", "endpoint_id", act.EndpointID, "models", len(modelURNs))
	return nil
}

// activationURNs returns the user's model URNs, without repeats, followed by
// the capability URNs of this kind of device.
func (d *DirectlyConnectedDevice) activationURNs(user []string) ([]string, error) {
	caps := []string{model.CapDirectActivation, model.CapDevicePolicy}
	if d.gateway {
		caps = append(caps, model.CapIndirectActivation)
	}
	caps = append(caps, model.CapMessageDispatcher, model.CapDiagnostics)
	return modelList(user, caps)
}

// modelList checks the user's URNs and appends extra ones, keeping the first
// of any repeat.
func modelList(user, extra []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for i, u := range user {
		if strings.TrimSpace(u) == "" {
			return nil, fmt.Errorf("model URN %d is empty, expected a device model URN", i+1)
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, u := range extra {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, nil
}

// signatureHash maps a policy's Java signature algorithm name to its hash.
func signatureHash(alg string) (crypto.Hash, error) {
	switch strings.ToUpper(alg) {
	case "SHA256WITHRSA", "SHA256WITHRSAENCRYPTION":
		return crypto.SHA256, nil
	case "SHA384WITHRSA", "SHA384WITHRSAENCRYPTION":
		return crypto.SHA384, nil
	case "SHA512WITHRSA", "SHA512WITHRSAENCRYPTION":
		return crypto.SHA512, nil
	}
	return 0, fmt.Errorf("the activation policy asks for the hash algorithm %q, expected SHA256withRSA, SHA384withRSA or SHA512withRSA", alg)
}

// rsaSigner signs with RSA PKCS#1 v1.5 over hash.
func rsaSigner(key *rsa.PrivateKey, hash crypto.Hash) func([]byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		h := hash.New()
		h.Write(data)
		return rsa.SignPKCS1v15(rand.Reader, key, hash, h.Sum(nil))
	}
}
