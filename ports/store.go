package ports

import (
	"context"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
)

// ModelStore keeps device models locally (protocol.md §4: one
// dm-<URL-encoded URN>.json file each). It is read before the network is
// asked and written after a fetch.
//
// Contract: Load returns an error wrapping ErrNotFound when the store has no
// such model, and a different error (naming the file) when what it has is
// corrupt — the caller reports it and fetches again. Save replaces atomically:
// a crash leaves the old or the new model, never a torn one. Safe for
// concurrent use. Models passed in or out are shared read-only.
type ModelStore interface {
	Load(urn string) (*model.DeviceModel, error)
	Save(m *model.DeviceModel) error
}

// TrustStore holds the device's trusted assets: the provisioning file opened
// with its passphrase.
//
// Contract: Load returns the assets (a copy the caller may keep) or an error
// naming the file — a wrong passphrase or tampered file is one clear error,
// never a cipher detail. Save replaces atomically and durably (it returns
// after the data reached the disk); it is called after activation and when a
// gateway registers devices. Safe for concurrent use.
type TrustStore interface {
	Load() (*trust.Assets, error)
	Save(a *trust.Assets) error
}

// Batch is a set of messages taken from an Outbox by Begin. Seq identifies
// the transaction; the messages keep the outbox's order (priority first,
// then FIFO).
type Batch struct {
	Seq      uint64
	Messages []message.Message
}

// Outbox buffers outgoing messages until the cloud accepted them (modelled on
// Telegraf's transactional output buffer).
//
// Contract:
//   - Add stores msgs. When it returns nil, every GUARANTEED_DELIVERY message
//     among them is durable (on disk for a disk outbox) and will be delivered
//     or reported; other messages may be dropped under pressure, oldest first,
//     and dropped counts how many were (of earlier or these messages). When
//     guaranteed messages do not fit, Add returns an error wrapping
//     ErrOutboxFull and adds nothing (the caller sees back-pressure; nothing
//     is dropped silently). Add blocks only for I/O, within ctx.
//   - Begin returns up to max messages (and, when maxBytes > 0, no more than
//     maxBytes of encoded JSON array, but at least one message if any is
//     waiting) that are not already in an open batch; an empty Batch when
//     there is none. It does not remove them.
//   - End closes a batch: the messages whose indexes are in delivered leave
//     the outbox for good; the others go back to the head of their priority,
//     in their order, to be taken again. Ending an unknown or already ended
//     batch is an error.
//   - Safe for concurrent use.
type Outbox interface {
	Add(ctx context.Context, msgs ...message.Message) (dropped int, err error)
	Begin(max, maxBytes int) (Batch, error)
	End(b Batch, delivered []int) error
}
