package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// Model fetches a device model (protocol.md §4) on
// iotcs/{endpoint ID}/deviceModels with {"urn":urn}; the answer is the
// model as over HTTPS, parsed by model.Parse (Raw keeps the cloud's JSON
// for the model store). A 404 error answer gives an error wrapping
// ports.ErrNotFound; a draft model is a permanent error unless
// Config.AllowDraftModels is set; so is a model that does not parse or has
// another URN.
func (c *Client) Model(ctx context.Context, urn string) (*model.DeviceModel, error) {
	op := fmt.Sprintf("fetch device model %q", urn)
	if urn == "" {
		return nil, &ports.CloudError{Op: "fetch device model", Permanent: true, Index: -1, Err: errors.New("the URN is empty; expected a device model URN")}
	}
	body, _ := json.Marshal(map[string]string{"urn": urn})
	payload, err := c.call(ctx, op, roleEndpoint, pathModels, body, "")
	if err != nil {
		return nil, err
	}
	m, err := model.Parse(payload)
	if err != nil {
		return nil, answerError(op, "the cloud's model is not usable: %w", err)
	}
	if m.URN != urn {
		return nil, answerError(op, "the cloud answered with model %q; expected %q", m.URN, urn)
	}
	if m.Draft && !c.allowDrafts {
		return nil, answerError(op, "the model is a draft; drafts are refused unless AllowDraftModels is set")
	}
	return m, nil
}
