package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/iotnode/iotnode/adapters/fsstore"
)

func activateCommand() *command {
	return &command{
		name:    "activate",
		summary: "Activate the device and register a gateway's devices, then exit",
		help: `
Activates the device of the config's provisioning file with the models of the
devices on its own endpoint (run does this too, on its first start), and in
gateway mode registers every indirectly connected device. It prints the
endpoint ids. Running it again on an activated device only registers the
indirectly connected devices again, which the cloud answers with the same ids.`,
		setup: withNode((*Main).activate),
	}
}

// withNode is the setup of a command that opens the node of the config,
// runs do on it once and closes it, returning the errors of both.
func withNode(do func(m *Main, ctx context.Context, n *node) error) func(*flag.FlagSet) func(context.Context, *Main, []string) error {
	return func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
		var cf configFlags
		cf.define(fs, false)
		return func(ctx context.Context, m *Main, pos []string) error {
			c, err := cf.load(m, m.drivers())
			if err != nil {
				return err
			}
			n, err := openNode(c, m.nodeDeps(c))
			if err != nil {
				return err
			}
			return errors.Join(do(m, ctx, n), n.close(context.Background()))
		}
	}
}

func (m *Main) activate(ctx context.Context, n *node) error {
	if n.dcd.IsActivated() {
		fmt.Fprintf(m.stdout, "Already activated as endpoint %s\n", n.dcd.EndpointID())
	} else {
		own := n.ownModels()
		if err := n.dcd.Activate(ctx, own...); err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "Activated as endpoint %s (provisioning file %s updated)\n", n.dcd.EndpointID(), n.cfg.ProvisioningFile)
	}
	for _, d := range n.cfg.Devices {
		if d.HardwareID == "" {
			continue
		}
		id, err := n.gateway.RegisterDevice(ctx, d.HardwareID, d.Metadata, d.Model)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.stdout, "Registered %s (hardware id %s) as endpoint %s\n", d.Name, d.HardwareID, id)
	}
	return nil
}

func modelsPullCommand() *command {
	return &command{
		name:    "models pull",
		summary: "Fetch the devices' models from the cloud into the data directory",
		help: `
Fetches the device model of every configured device from the cloud, even if
the model store has it, and writes it to DATA_DIR/models (dm-<URN>.json). The
node then starts without asking the cloud for models, and the bindings are
checked against them before anything starts. The device must be activated.`,
		setup: withNode((*Main).pullModels),
	}
}

func (m *Main) pullModels(ctx context.Context, n *node) error {
	if !n.dcd.IsActivated() {
		return fmt.Errorf("the device is not activated: run 'iotnode activate --config %s' first", n.cfg.file)
	}
	var urns []string
	for _, d := range n.cfg.Devices {
		if !slices.Contains(urns, d.Model) {
			urns = append(urns, d.Model)
		}
	}
	for _, urn := range urns {
		mdl, err := n.cloud.Model(ctx, urn)
		if err != nil {
			return fmt.Errorf("pull device model %s: %w", urn, err)
		}
		if err := n.models.Save(mdl); err != nil {
			return fmt.Errorf("pull device model %s: %w", urn, err)
		}
		fmt.Fprintf(m.stdout, "Pulled %s (%s) into %s\n", urn, mdl.Name, filepath.Join(n.models.Dir(), fsstore.ModelFileName(urn)))
	}
	return nil
}
