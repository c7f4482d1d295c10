package client

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/iotnode/iotnode/device"
)

// DataDirSuffix is appended to the provisioning file's path to make the
// default data directory ("device.conf" -> "device.conf.d").
const DataDirSuffix = ".d"

// Files and directories inside the data directory.
const (
	OutboxFile = "outbox" // the durable outbox directory (fsstore.OpenOutbox)
	ModelsDir  = "models" // the device model store, unless WithModelStore
)

// options are the settings that Options change.
type options struct {
	dataDir       string
	dataDirSet    bool
	modelDir      string
	modelDirSet   bool
	logger        *slog.Logger
	deviceOpts    []device.Option
	insecurePerms bool
	kdfIterations int // 0: fsstore's default

	outboxBytes    int64 // 0: fsstore's default
	outboxMemBytes int   // 0: fsstore's default

	httpTimeout time.Duration // 0: the transport's default
	allowDrafts bool
}

// Option changes how NewDirectlyConnectedDevice and NewGatewayDevice build
// a device. Invalid values make the constructor fail with an error naming
// the option; every invalid option is reported at once.
type Option func(*options)

// WithDataDir sets the directory that holds the device's state: the outbox
// (OutboxFile) and, unless WithModelStore says otherwise, the device model
// store (ModelsDir). It is created, mode 0700, when missing. Default: the
// provisioning file's path followed by DataDirSuffix.
func WithDataDir(dir string) Option {
	return func(o *options) { o.dataDir, o.dataDirSet = dir, true }
}

// WithModelStore sets the directory of the local device model store, the
// dm-<URL-encoded URN>.json files that Oracle's Java and Python libraries
// also write (so a directory can be shared with them). It is created, mode
// 0700, when missing. Default: DATADIR/models.
func WithModelStore(dir string) Option {
	return func(o *options) { o.modelDir, o.modelDirSet = dir, true }
}

// WithLogger sets the logger of the device, the transport and the outbox;
// each names its component (attribute "logger", such as
// iotnode.dispatcher.transmitter or iotnode.http). Default (and nil):
// nothing is logged. Secrets are never logged, payloads only at debug level.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithDeviceOptions passes tunables to the device (device.WithPollingInterval,
// device.WithLongPolling, device.WithSettleTime, ...). It may be given more
// than once; the options apply in order.
func WithDeviceOptions(opts ...device.Option) Option {
	return func(o *options) { o.deviceOpts = append(o.deviceOpts, opts...) }
}

// WithInsecurePermissions lets the constructor open a provisioning file
// that group or others may access. Without it such a file is refused: chmod
// 600 it instead when you can.
func WithInsecurePermissions() Option {
	return func(o *options) { o.insecurePerms = true }
}

// WithKDFIterations sets the PBKDF2 iteration count used when the
// provisioning file is written again (after activation). Low counts make
// tests fast and files weak: for tests only. Default: fsstore's
// (trust.DefaultIterations).
func WithKDFIterations(n int) Option {
	return func(o *options) { o.kdfIterations = n }
}

// WithOutboxLimits bounds the durable outbox: guaranteed is the size in
// bytes of the outbox directory on disk, where GUARANTEED_DELIVERY messages
// wait (records, their framing and the reserve file; Add fails when they do
// not fit; see fsstore.OutboxOptions.MaxBytes), other the bytes of other messages kept in memory (the oldest are
// dropped, and counted, when they do not fit). 0 keeps a default
// (fsstore.DefaultOutboxMaxBytes, fsstore.DefaultOutboxMaxMemoryBytes).
func WithOutboxLimits(guaranteed int64, other int) Option {
	return func(o *options) { o.outboxBytes, o.outboxMemBytes = guaranteed, other }
}

// WithHTTPTimeout bounds each call to the cloud that is not a long poll
// (Oracle's http_response_timeout / httpConnectionTimeout). Default 15 s.
// Over MQTT it bounds each call the same way: the publish, its
// acknowledgement and the cloud's answer (adapters/mqtt Config.Timeout);
// connecting has its own bound there (30 s).
func WithHTTPTimeout(d time.Duration) Option {
	return func(o *options) { o.httpTimeout = d }
}

// WithAllowDraftModels lets activation create draft device models for
// unknown URNs and lets DeviceModel return drafts (Oracle's
// allow_draft_device_models). Default off. Over MQTT it governs DeviceModel
// only: activation over MQTT has no createDraft parameter, and the cloud's
// default (drafts are created) applies.
func WithAllowDraftModels() Option {
	return func(o *options) { o.allowDrafts = true }
}

// validate reports every invalid option at once.
func (o *options) validate() error {
	var errs []error
	if o.dataDirSet && o.dataDir == "" {
		errs = append(errs, errors.New("option WithDataDir: the directory is empty, expected a directory for the device's state"))
	}
	if o.modelDirSet && o.modelDir == "" {
		errs = append(errs, errors.New("option WithModelStore: the directory is empty, expected a directory for device models"))
	}
	if o.kdfIterations < 0 {
		errs = append(errs, fmt.Errorf("option WithKDFIterations: %d, expected 0 (the default) or a positive count", o.kdfIterations))
	}
	if o.outboxBytes < 0 || o.outboxMemBytes < 0 {
		errs = append(errs, fmt.Errorf("option WithOutboxLimits: %d and %d bytes, expected 0 (the default) or more", o.outboxBytes, o.outboxMemBytes))
	}
	if o.httpTimeout < 0 {
		errs = append(errs, fmt.Errorf("option WithHTTPTimeout: %s, expected 0 (the default) or more", o.httpTimeout))
	}
	return errors.Join(errs...)
}
