package device

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/iotnode/iotnode/ports"
)

// The standard metadata keys of an indirectly connected device
// (protocol.md §2c). Any other vendor key may be added.
const (
	MetaManufacturer        = "manufacturer"
	MetaModelNumber         = "modelNumber"
	MetaSerialNumber        = "serialNumber"
	MetaDeviceClass         = "deviceClass"
	MetaProtocol            = "protocol"
	MetaProtocolDeviceClass = "protocolDeviceClass"
	MetaProtocolDeviceID    = "protocolDeviceId"
)

// reservedMeta are keys of the flat activation body that metadata may not use.
var reservedMeta = []string{"hardwareId", "deviceModels", "signature"}

// GatewayDevice is a directly connected device that also activates
// indirectly connected devices (sensors behind it) and carries their
// messages (Oracle's GatewayDevice). Everything of DirectlyConnectedDevice
// applies; in addition CreateVirtualDevice accepts the endpoint IDs that
// RegisterDevice returns.
type GatewayDevice struct {
	*DirectlyConnectedDevice
}

// NewGatewayDevice returns a gateway built from cfg, like
// NewDirectlyConnectedDevice. Activate then also declares the
// indirect_activation capability.
func NewGatewayDevice(cfg Config, opts ...Option) (*GatewayDevice, error) {
	d, err := newDevice(cfg, true, opts)
	if err != nil {
		return nil, fmt.Errorf("new gateway device: %w", err)
	}
	return &GatewayDevice{DirectlyConnectedDevice: d}, nil
}

// RegisterDevice activates the indirectly connected device hardwareID
// through the gateway (protocol.md §2c) and returns its endpoint ID. The
// cloud returns the same endpoint for the same hardware ID, so calling it
// on every start is the normal use. metadata holds descriptive pairs (the
// Meta* keys or vendor keys; it may be nil); modelURNs are the device models
// the device implements, at least one.
//
// When the trust store holds a shared secret for hardwareID (a device
// provisioned to this gateway), the request carries its proof,
// HMAC-SHA256(secret, gateway endpoint ID); otherwise it carries none.
//
// It needs an activated gateway and honours ctx. Errors name the hardware
// ID; a cloud that refuses the gateway's credentials gives an error wrapping
// ports.ErrUnauthorized.
func (g *GatewayDevice) RegisterDevice(ctx context.Context, hardwareID string, metadata map[string]string, modelURNs ...string) (string, error) {
	op := fmt.Sprintf("register device %q", hardwareID)
	if strings.TrimSpace(hardwareID) == "" {
		return "", fmt.Errorf("register device: the hardware ID is empty, expected the device's activation ID")
	}
	if len(modelURNs) == 0 {
		return "", fmt.Errorf("%s: no device model URN, expected at least one", op)
	}
	urns, err := modelList(modelURNs, nil)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		if k == "" || slices.Contains(reservedMeta, k) {
			return "", fmt.Errorf("%s: metadata key %q is reserved or empty, expected a key such as %q or a vendor key",
				op, k, MetaSerialNumber)
		}
	}
	gw, err := g.activeEndpoint(op)
	if err != nil {
		return "", err
	}
	assets, err := g.cfg.Trust.Load()
	if err != nil {
		return "", fmt.Errorf("%s: load trusted assets: %w", op, err)
	}
	var sig []byte
	for _, icd := range assets.Devices {
		if icd.HardwareID == hardwareID {
			mac := hmac.New(sha256.New, icd.SharedSecret)
			mac.Write([]byte(gw))
			sig = mac.Sum(nil)
			break
		}
	}
	act, err := g.cfg.Activator.ActivateIndirect(ctx, ports.IndirectActivation{
		HardwareID: hardwareID,
		ModelURNs:  urns,
		Metadata:   maps.Clone(metadata),
		Signature:  sig,
	})
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	if act.EndpointID == "" {
		return "", fmt.Errorf("%s: the cloud answered without an endpoint ID", op)
	}
	g.log.Info("indirectly connected device registered", "hardware_id", hardwareID,
		"endpoint_id", act.EndpointID, "signed", sig != nil)
	return act.EndpointID, nil
}
