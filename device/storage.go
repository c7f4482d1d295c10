package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
	"github.com/iotnode/iotnode/ports"
)

// SyncStatus is where a storage object stands with its copy in the cloud's
// object store (Oracle's StorageObject.SyncStatus).
type SyncStatus string

// The sync statuses, with Oracle's names.
const (
	// NotInSync: the content was not transferred yet, or its input or
	// output changed since.
	NotInSync SyncStatus = "NOT_IN_SYNC"
	// SyncPending: a transfer is in progress.
	SyncPending SyncStatus = "SYNC_PENDING"
	// InSync: the last transfer succeeded.
	InSync SyncStatus = "IN_SYNC"
	// SyncFailed: the last transfer failed for good, or was given up when
	// its context ended.
	SyncFailed SyncStatus = "SYNC_FAILED"
)

// SyncEvent is what OnSync callbacks receive when a sync of a storage
// object ends.
type SyncEvent struct {
	Object *StorageObject
	// VirtualDevice and Name are the virtual device and the attribute or
	// field whose Set started the sync; nil and "" for a Sync call.
	VirtualDevice *VirtualDevice
	Name          string
	// Status is InSync or SyncFailed; Err is the failure, nil when in sync.
	Status SyncStatus
	Err    error
}

// maxObjectName bounds an object's full name, endpoint prefix included
// (the reference cloud's limit).
const maxObjectName = 1024

// defaultContentType is the MIME type of an object created without one.
const defaultContentType = "application/octet-stream"

// pendingURI stands for a storage object's URI in an alert or data message
// built before the object is in sync; it is replaced before the message is
// queued.
const pendingURI = "iotnode:storage-object-pending"

// StorageObjectOption changes how CreateStorageObject names an object.
type StorageObjectOption func(*storageObjectOptions)

type storageObjectOptions struct {
	noPrefix bool
}

// WithoutEndpointPrefix keeps the object name as given instead of placing
// it under "<endpointId>/" (Oracle's disableStorageObjectPrefix). A cloud
// may still place it there: the reference cloud always does.
func WithoutEndpointPrefix() StorageObjectOption {
	return func(o *storageObjectOptions) { o.noPrefix = true }
}

// CreateStorageObject returns a storage object called name (Oracle's
// createStorageObject(name, type)): content the device uploads to, or
// downloads from, the cloud's object store (protocol.md §7), and whose
// URI a URI attribute or field can carry (VirtualDevice.Set). The object
// is named "<endpointId>/<name>" unless name already starts with that or
// WithoutEndpointPrefix is given. contentType is its MIME type; "" means
// application/octet-stream.
//
// It makes no network call: give the object an input (SetInputPath,
// SetInput) to upload or an output (SetOutputPath) to download, then Sync,
// or Set it on a URI attribute. It fails for a name the cloud would refuse
// (empty, longer than 1024 bytes with the prefix, not UTF-8, with control
// characters, backslashes or empty, "." or ".." segments), an invalid
// content type, a device without Config.Storage, and like
// CreateVirtualDevice with ErrNotActivated or ErrClosed.
func (d *DirectlyConnectedDevice) CreateStorageObject(name, contentType string, opts ...StorageObjectOption) (*StorageObject, error) {
	op := fmt.Sprintf("create storage object %q", name)
	var o storageObjectOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if d.cfg.Storage == nil {
		return nil, fmt.Errorf("%s: Config.Storage is nil, expected the cloud transport that moves storage objects (package client wires the HTTPS one)", op)
	}
	endpoint, err := d.activeEndpoint(op)
	if err != nil {
		return nil, err
	}
	if err := checkObjectName(name); err != nil {
		return nil, fmt.Errorf("%s: the name %w", op, err)
	}
	full := name
	if !o.noPrefix && !strings.HasPrefix(name, endpoint+"/") {
		full = endpoint + "/" + name
	}
	if len(full) > maxObjectName {
		return nil, fmt.Errorf("%s: the name is %d bytes long with the endpoint prefix %q, expected at most %d", op, len(full), endpoint+"/", maxObjectName)
	}
	if contentType == "" {
		contentType = defaultContentType
	} else if _, _, err := mime.ParseMediaType(contentType); err != nil {
		return nil, fmt.Errorf("%s: content type %q: %v, expected a MIME type such as image/jpeg", op, contentType, err)
	}
	return &StorageObject{
		dev:         d,
		name:        full,
		log:         d.named("iotnode.storage").With("object", full),
		contentType: contentType,
		status:      NotInSync,
		length:      -1,
	}, nil
}

// checkObjectName applies the reference cloud's rules for object names;
// the error reads after "the name".
func checkObjectName(name string) error {
	switch {
	case name == "":
		return errors.New(`is empty, expected a name such as "photo.jpg"`)
	case len(name) > maxObjectName:
		return fmt.Errorf("is %d bytes long, expected at most %d", len(name), maxObjectName)
	case !utf8.ValidString(name):
		return errors.New("is not valid UTF-8")
	case strings.Contains(name, `\`):
		return errors.New("contains a backslash, expected '/'-separated segments")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("contains a control character")
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf(`has the segment %q, expected non-empty segments other than "." and ".."`, seg)
		}
	}
	return nil
}

// StorageObject is content in the cloud's object store (Oracle's
// StorageObject, new-style storage only): build one with
// CreateStorageObject. Its methods are safe for concurrent use. Setters
// fail while a sync is in progress (SyncPending).
type StorageObject struct {
	dev  *DirectlyConnectedDevice
	name string
	log  *slog.Logger

	mu          sync.Mutex
	contentType string
	encoding    string
	custom      map[string]string
	open        func() (io.ReadCloser, int64, error) // the input; nil: none
	input       string                               // for messages: the path, or "a reader"
	output      string                               // the output path; "": none
	status      SyncStatus
	uri         string
	length      int64
	modified    time.Time
	onSync      func(SyncEvent)
	run         *syncRun // the sync in progress, or nil
}

// syncRun is one sync in progress; err is set before done is closed.
type syncRun struct {
	done chan struct{}
	err  error
}

// Name returns the object's full name, endpoint prefix included.
func (o *StorageObject) Name() string { return o.name }

// URI returns the object's URI, the one messages carry: the object URL the
// cloud gave for the first transfer, without its query (the reference
// cloud's is <server>/storage/o/<endpointId>/<name>; Oracle's is the
// pre-authorized object URL of OCI). It is "" until a transfer began.
func (o *StorageObject) URI() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.uri
}

// ContentType returns the MIME type: the one given to CreateStorageObject,
// or the store's after a download.
func (o *StorageObject) ContentType() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.contentType
}

// Encoding returns the content encoding ("" for none): the one set with
// SetEncoding, or the store's after a download.
func (o *StorageObject) Encoding() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.encoding
}

// Length returns the content's size in bytes after a sync, -1 before.
func (o *StorageObject) Length() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.length
}

// LastModified returns when the store last stored the content, as the
// store said after a sync (the device's clock when it said nothing); zero
// before.
func (o *StorageObject) LastModified() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.modified
}

// Metadata returns a copy of the custom metadata: what SetMetadata set, or
// the store's after a download (keys in lower case).
func (o *StorageObject) Metadata() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.custom)
}

// SyncStatus returns the object's sync status.
func (o *StorageObject) SyncStatus() SyncStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.status
}

// OnSync sets the callback for the end of each sync, successful or not;
// nil removes it. For a Sync call it runs on the caller's goroutine before
// Sync returns; for a sync that VirtualDevice.Set started, on that virtual
// device's callback goroutine (see VirtualDevice), after the message was
// queued or reported. A panic in it is recovered and logged.
func (o *StorageObject) OnSync(fn func(SyncEvent)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.onSync = fn
}

// SetEncoding sets the content encoding sent with an upload
// (Content-Encoding, e.g. "gzip" for content compressed beforehand).
func (o *StorageObject) SetEncoding(encoding string) error {
	return o.change("set encoding", func() { o.encoding = encoding })
}

// SetMetadata sets one custom metadata entry sent with an upload (as an
// opc-meta-<key> header); an empty value removes it. Keys are letters,
// digits and - _ . only, and are stored in lower case.
func (o *StorageObject) SetMetadata(key, value string) error {
	if key == "" || strings.ContainsFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("storage object %q: metadata key %q: expected letters, digits and - _ . only", o.name, key)
	}
	return o.change("set metadata", func() {
		if value == "" {
			delete(o.custom, strings.ToLower(key))
			return
		}
		if o.custom == nil {
			o.custom = map[string]string{}
		}
		o.custom[strings.ToLower(key)] = value
	})
}

// SetInputPath makes the file at path the content the next Sync uploads,
// read again for every attempt (with its size then). It clears the output
// path and resets the status to NotInSync. It fails when path is not a
// regular file.
func (o *StorageObject) SetInputPath(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("storage object %q: input: %w", o.name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("storage object %q: input %s is not a regular file", o.name, path)
	}
	open := func() (io.ReadCloser, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	return o.setInput(open, path)
}

// SetInput makes what open returns the content the next Sync uploads: open
// is called for every attempt and must return the content from its start;
// the sync closes what it returns. size is the content's length, or -1
// when unknown (the upload is then streamed chunked). It clears the output
// path and resets the status to NotInSync.
func (o *StorageObject) SetInput(open func() (io.ReadCloser, error), size int64) error {
	if open == nil || size < -1 {
		return fmt.Errorf("storage object %q: input: open is nil or size %d is below -1, expected a function and the size or -1", o.name, size)
	}
	return o.setInput(func() (io.ReadCloser, int64, error) {
		r, err := open()
		return r, size, err
	}, "a reader")
}

func (o *StorageObject) setInput(open func() (io.ReadCloser, int64, error), what string) error {
	return o.change("set input", func() {
		o.open, o.input, o.output = open, what, ""
		o.status = NotInSync
	})
}

// SetOutputPath makes path the file the next Sync downloads the content
// to. The content is written to a temporary file in the same directory,
// which replaces path only once the download is complete. It clears the
// input and resets the status to NotInSync.
func (o *StorageObject) SetOutputPath(path string) error {
	if path == "" {
		return fmt.Errorf("storage object %q: output: the path is empty", o.name)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("storage object %q: output %s: the directory does not exist", o.name, path)
	}
	return o.change("set output", func() {
		o.open, o.input, o.output = nil, "", path
		o.status = NotInSync
	})
}

// change applies fn unless a sync is in progress.
func (o *StorageObject) change(what string, fn func()) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.run != nil {
		return fmt.Errorf("storage object %q: %s: a sync is in progress (%s); change the object when it ended", o.name, what, SyncPending)
	}
	fn()
	return nil
}

// Sync transfers the content: it uploads the input when one is set
// (SetInputPath, SetInput), else downloads to the output path. It blocks
// until the transfer ended or ctx ended, and returns nil at once when the
// object is InSync (nothing changed since). While a sync is in progress,
// another Sync waits for it and returns its outcome.
//
// Each attempt asks the cloud for a pre-authorized URL, then transfers;
// transient failures are retried within ctx with the dispatcher's backoff
// (WithBackoff). Errors, after which the status is SyncFailed: a permanent
// cloud or store answer (a *ports.CloudError, or ports.ErrUnauthorized),
// an input that cannot be read or an output that cannot be written, or
// ctx's end (wrapping ctx.Err() and the last failure). Without an input or
// an output, or once the device is closed (ErrClosed), it fails without
// changing the status. The OnSync callback runs before it returns.
func (o *StorageObject) Sync(ctx context.Context) error {
	return o.sync(ctx, o.notifyHere)
}

// notifyHere runs the OnSync callback on the calling goroutine.
func (o *StorageObject) notifyHere(ev SyncEvent) {
	fn := o.callback()
	if fn == nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			o.log.Error("OnSync callback panicked", "panic", fmt.Sprint(r))
		}
	}()
	fn(ev)
}

func (o *StorageObject) callback() func(SyncEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.onSync
}

// plan is what one sync transfers, taken under the lock.
type plan struct {
	open   func() (io.ReadCloser, int64, error)
	output string
	meta   ports.ObjectMeta
}

// sync runs a sync, or waits for the one in progress. notify receives the
// outcome of a sync this call ran (not of one it joined).
func (o *StorageObject) sync(ctx context.Context, notify func(SyncEvent)) error {
	op := fmt.Sprintf("sync storage object %q", o.name)
	if o.dev.closing.Load() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	o.mu.Lock()
	if r := o.run; r != nil {
		o.mu.Unlock()
		select {
		case <-r.done:
			return r.err
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for the sync in progress: %w", op, ctx.Err())
		}
	}
	if o.status == InSync {
		o.mu.Unlock()
		return nil
	}
	if o.open == nil && o.output == "" {
		o.mu.Unlock()
		return fmt.Errorf("%s: nothing to sync: set an input (SetInputPath) to upload or an output path (SetOutputPath) to download", op)
	}
	p := plan{open: o.open, output: o.output, meta: ports.ObjectMeta{
		ContentType: o.contentType, ContentEncoding: o.encoding, Custom: maps.Clone(o.custom),
	}}
	r := &syncRun{done: make(chan struct{})}
	o.run, o.status = r, SyncPending
	o.mu.Unlock()

	got, err := o.transfer(ctx, p)

	o.mu.Lock()
	ev := SyncEvent{Object: o, Status: InSync}
	if err != nil {
		err = fmt.Errorf("%s: %w", op, err)
		ev.Status, ev.Err = SyncFailed, err
	} else {
		o.length = got.Length
		o.modified = got.LastModified
		if o.modified.IsZero() {
			o.modified = o.dev.clock.Now()
		}
		if p.open == nil { // a download: the store's description wins
			if got.ContentType != "" {
				o.contentType = got.ContentType
			}
			o.encoding, o.custom = got.ContentEncoding, got.Custom
		}
	}
	o.status = ev.Status
	r.err, o.run = err, nil
	close(r.done)
	o.mu.Unlock()
	if err != nil {
		o.log.Debug("storage object sync failed", "error", err)
	} else {
		o.log.Debug("storage object in sync", "bytes", got.Length, "upload", p.open != nil)
	}
	notify(ev)
	return err
}

// localError is a failure of the device's own input or output: retrying
// cannot help.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// transfer makes attempts until one succeeds, one fails for good or ctx
// ends, waiting the dispatcher's backoff between them.
func (o *StorageObject) transfer(ctx context.Context, p plan) (ports.ObjectMeta, error) {
	d := o.dev
	for failures := 1; ; failures++ {
		got, err := o.attempt(ctx, p)
		if err == nil {
			return got, nil
		}
		var local *localError
		if ctx.Err() != nil || errors.As(err, &local) || ports.IsPermanent(err) {
			return ports.ObjectMeta{}, err
		}
		wait := d.set.backoffDelay(failures, retryAfter(err))
		o.log.Debug("storage object transfer failed; retrying", "attempt", failures, "wait", wait, "error", err)
		select {
		case <-d.clock.After(wait):
		case <-ctx.Done():
			return ports.ObjectMeta{}, fmt.Errorf("%w after %d attempt(s), the last one failed: %w", ctx.Err(), failures, err)
		}
	}
}

// attempt asks for a URL and makes one transfer.
func (o *StorageObject) attempt(ctx context.Context, p plan) (ports.ObjectMeta, error) {
	store := o.dev.cfg.Storage
	method := "GET"
	if p.open != nil {
		method = "PUT"
	}
	u, headers, err := store.StorageURL(ctx, o.name, method)
	if err != nil {
		return ports.ObjectMeta{}, err
	}
	o.setURI(u)
	if p.open != nil {
		return o.upload(ctx, u, headers, p)
	}
	return o.download(ctx, u, headers, p.output)
}

func (o *StorageObject) upload(ctx context.Context, u string, headers map[string]string, p plan) (ports.ObjectMeta, error) {
	body, size, err := p.open()
	if err != nil {
		return ports.ObjectMeta{}, &localError{fmt.Errorf("open the input: %w", err)}
	}
	defer body.Close()
	meta := p.meta
	meta.Length = size
	return o.dev.cfg.Storage.Upload(ctx, u, headers, body, meta)
}

func (o *StorageObject) download(ctx context.Context, u string, headers map[string]string, output string) (ports.ObjectMeta, error) {
	f, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".*.part")
	if err != nil {
		return ports.ObjectMeta{}, &localError{fmt.Errorf("create the output: %w", err)}
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := &fileWriter{f: f}
	got, err := o.dev.cfg.Storage.Download(ctx, u, headers, w)
	if w.err != nil {
		return ports.ObjectMeta{}, &localError{fmt.Errorf("write the output: %w", w.err)}
	}
	if err != nil {
		return ports.ObjectMeta{}, err
	}
	if err := f.Sync(); err != nil {
		return ports.ObjectMeta{}, &localError{fmt.Errorf("write the output: %w", err)}
	}
	if err := f.Close(); err != nil {
		return ports.ObjectMeta{}, &localError{fmt.Errorf("write the output: %w", err)}
	}
	if err := os.Rename(f.Name(), output); err != nil {
		os.Remove(f.Name())
		done = true
		return ports.ObjectMeta{}, &localError{fmt.Errorf("write the output: %w", err)}
	}
	done = true
	return got, nil
}

// fileWriter keeps the file's own write error apart from the transfer's.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// setURI records the object's URI from a storage URL: the URL without its
// query and fragment (a signature valid for one method and minutes has no
// place in a message).
func (o *StorageObject) setURI(storageURL string) {
	u, err := url.Parse(storageURL)
	if err != nil {
		return
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	o.mu.Lock()
	defer o.mu.Unlock()
	o.uri = u.String()
}

// inSync returns the object's URI when it is in sync.
func (o *StorageObject) inSync() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.uri, o.status == InSync && o.uri != ""
}

// checkLinkable reports why obj cannot be linked to a message of v.
func (v *VirtualDevice) checkLinkable(obj *StorageObject) error {
	switch {
	case obj == nil:
		return errors.New("the storage object is nil")
	case obj.dev != v.p.dev:
		return fmt.Errorf("storage object %q was created by another device", obj.name)
	}
	obj.mu.Lock()
	defer obj.mu.Unlock()
	if obj.status != InSync && obj.run == nil && obj.open == nil && obj.output == "" {
		return fmt.Errorf("storage object %q has nothing to sync: set its input (SetInputPath) first", obj.name)
	}
	return nil
}

// setStorageObject is VirtualDevice.Set with a storage object: the URI
// attribute carries the object's URI. An object in sync is sent at once;
// otherwise the message is held until the object's sync (started here when
// none is running) ends.
func (v *VirtualDevice) setStorageObject(op, name string, obj *StorageObject) error {
	a, ok := v.model.Attribute(name)
	if !ok || a.Type != model.TypeURI {
		v.mu.Lock()
		defer v.mu.Unlock()
		_, err := v.state.Set(name, obj, v.p.dev.clock.Now()) // the model's own error for it
		return err
	}
	if err := v.checkLinkable(obj); err != nil {
		return fmt.Errorf("attribute %q: %w", a.Name, err)
	}
	now := v.p.dev.clock.Now()
	if uri, ok := obj.inSync(); ok {
		v.mu.Lock()
		m, err := v.state.Set(a.Name, uri, now)
		v.mu.Unlock()
		if err != nil {
			return err
		}
		return v.queue(op, m)
	}
	build := func(uris []string) (message.Message, error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.state.Set(a.Name, uris[0], now)
	}
	unsent := func(uris []string) []message.Message {
		// The message that was not sent, built aside: the last-known value
		// stays as it was.
		aside := virtual.New(v.endpoint, v.model, v.p.dev.newID, virtual.WithDataQoS(v.p.set.dataQoS))
		m, err := aside.Set(a.Name, uris[0], now)
		if err != nil {
			return nil
		}
		return []message.Message{m}
	}
	return v.hold(op, []linked{{field: a.Name, obj: obj}}, build, unsent)
}

// objectFields are the storage objects set on the URI fields of an Alert or
// Data, by field name.
type objectFields map[string]*StorageObject

// take returns what the builder gets for value set on the field name of
// formatURN: a placeholder URI for a storage object on a URI field, which
// it keeps; value itself otherwise (a storage object on another field is
// then refused by the builder).
func (f *objectFields) take(m *model.DeviceModel, formatURN, name string, value any) any {
	obj, isObj := value.(*StorageObject)
	if isObj {
		if format, ok := m.Format(formatURN); ok {
			for _, ff := range format.Fields {
				if ff.Name == name && ff.Type == model.TypeURI {
					if *f == nil {
						*f = objectFields{}
					}
					(*f)[name] = obj
					return pendingURI
				}
			}
		}
	}
	delete(*f, name)
	return value
}

// queueLinked queues m, an alert or data message built with the objects
// of objs on its fields: at once when every object is in sync, else held
// until their syncs end.
func (v *VirtualDevice) queueLinked(op string, m message.Message, objs objectFields) error {
	if len(objs) == 0 {
		return v.queue(op, m)
	}
	links := make([]linked, 0, len(objs))
	ready := true
	for _, f := range fieldsOf(m) { // in the format's field order
		obj, ok := objs[f.Name]
		if !ok {
			continue
		}
		if err := v.checkLinkable(obj); err != nil {
			return fmt.Errorf("%s: field %q: %w", op, f.Name, err)
		}
		links = append(links, linked{field: f.Name, obj: obj})
		if _, ok := obj.inSync(); !ok {
			ready = false
		}
	}
	patched := func(uris []string) message.Message {
		out := m
		fs := append([]message.Field(nil), fieldsOf(m)...)
		for i, l := range links {
			for j := range fs {
				if fs[j].Name == l.field && uris[i] != "" {
					fs[j].Value = uris[i]
				}
			}
		}
		switch {
		case out.Alert != nil:
			a := *out.Alert
			a.Fields = fs
			out.Alert = &a
		case out.Data != nil:
			d := *out.Data
			d.Fields = fs
			out.Data = &d
		}
		return out
	}
	if ready {
		uris := make([]string, len(links))
		for i, l := range links {
			uris[i], _ = l.obj.inSync()
		}
		return v.queue(op, patched(uris))
	}
	build := func(uris []string) (message.Message, error) { return patched(uris), nil }
	unsent := func(uris []string) []message.Message {
		for _, u := range uris {
			if u == "" {
				return nil
			}
		}
		return []message.Message{patched(uris)}
	}
	return v.hold(op, links, build, unsent)
}

// fieldsOf returns the fields of an alert or data message.
func fieldsOf(m message.Message) []message.Field {
	switch {
	case m.Alert != nil:
		return m.Alert.Fields
	case m.Data != nil:
		return m.Data.Fields
	}
	return nil
}

// linked is one storage object a held message carries, on the attribute or
// field called field.
type linked struct {
	field string
	obj   *StorageObject
}

// hold keeps a message until the syncs of its objects end, on a goroutine
// of its own: then build makes the message from the objects' URIs (in the
// order of links) and it is queued; or, when a sync failed, OnError
// receives the failure and what unsent makes of the URIs known ("" for an
// object the cloud never named), and nothing is sent.
//
// The goroutine belongs to the dispatcher and runs under the context of
// its policy goroutines, which Close cancels first and waits for, before
// the last requests are handled and the outbox flushed: a held message
// whose object is still syncing when Close begins is reported to OnError,
// not sent.
func (v *VirtualDevice) hold(op string, links []linked, build func(uris []string) (message.Message, error), unsent func(uris []string) []message.Message) error {
	p := v.p
	p.mu.Lock()
	if p.closed || p.polStopped {
		p.mu.Unlock()
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	p.polLoops.Add(1)
	ctx := p.polCtx
	p.mu.Unlock()
	go func() {
		defer p.polLoops.Done()
		v.release(ctx, op, links, build, unsent)
	}()
	return nil
}

// release waits for the syncs of links, then queues or reports the
// message; the OnSync callbacks of the syncs it ran come after that.
func (v *VirtualDevice) release(ctx context.Context, op string, links []linked, build func([]string) (message.Message, error), unsent func([]string) []message.Message) {
	var events []SyncEvent
	defer func() {
		for _, ev := range events {
			v.postSyncEvent(ev)
		}
	}()
	uris := make([]string, len(links))
	for i, l := range links {
		err := l.obj.sync(ctx, func(ev SyncEvent) {
			ev.VirtualDevice, ev.Name = v, l.field
			events = append(events, ev)
		})
		uris[i] = l.obj.URI()
		if err != nil {
			err = fmt.Errorf("%s: storage object %q did not sync, the message was not sent: %w", op, l.obj.name, err)
			v.log.Debug("held message not sent", "object", l.obj.name, "error", err)
			v.postError(unsent(uris), err)
			return
		}
	}
	m, err := build(uris)
	if err != nil {
		v.postError(nil, fmt.Errorf("%s: %w", op, err))
		return
	}
	if err := v.p.enqueue(m); err != nil {
		v.postError([]message.Message{m}, fmt.Errorf("%s: %w", op, err))
	}
}

// postSyncEvent runs the object's OnSync callback with ev on v's callback
// goroutine; when its queue is full the event is logged and dropped.
func (v *VirtualDevice) postSyncEvent(ev SyncEvent) {
	fn := ev.Object.callback()
	if fn == nil {
		return
	}
	if !v.post(func(context.Context) {
		_ = v.protect(fmt.Sprintf("OnSync callback of storage object %q", ev.Object.name), func() error { fn(ev); return nil })
	}) {
		v.log.Error("callback queue full: sync event dropped", "object", ev.Object.name, "status", ev.Status)
	}
}
