package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// fakeStorage is a ports.Storage in memory: URLs of a made-up store whose
// query is a signature, objects by name, failures and holds on demand.
type fakeStorage struct {
	mu       sync.Mutex
	objects  map[string]storedObject
	urlErrs  []error // the next StorageURL calls fail with these
	upErrs   []error // the next Upload calls fail with these
	downErrs []error
	calls    []string    // "URL PUT <name>", "PUT <name>", "GET <name>"
	times    []time.Time // of every transfer attempt
	// hold, when set, makes transfers wait for it (or their ctx) after
	// reading the content; holding is closed when one waits.
	hold    chan struct{}
	holding chan struct{}
}

type storedObject struct {
	content []byte
	meta    ports.ObjectMeta
}

func newFakeStorage() *fakeStorage { return &fakeStorage{objects: map[string]storedObject{}} }

func (s *fakeStorage) StorageURL(_ context.Context, object, method string) (string, map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "URL "+method+" "+object)
	if len(s.urlErrs) > 0 {
		err := s.urlErrs[0]
		s.urlErrs = s.urlErrs[1:]
		return "", nil, err
	}
	return "https://store.example/storage/o/" + object + "?expires=1&sig=" + method, map[string]string{"x-grant": method}, nil
}

// begin records a transfer attempt and returns its scripted failure.
func (s *fakeStorage) begin(call string, errs *[]error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
	s.times = append(s.times, time.Now())
	if len(*errs) > 0 {
		err := (*errs)[0]
		*errs = (*errs)[1:]
		return err
	}
	return nil
}

// wait blocks while hold is set.
func (s *fakeStorage) wait(ctx context.Context) error {
	s.mu.Lock()
	hold, holding := s.hold, s.holding
	s.mu.Unlock()
	if hold == nil {
		return nil
	}
	if holding != nil {
		close(holding)
		s.mu.Lock()
		s.holding = nil
		s.mu.Unlock()
	}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func objectName(u string) string {
	name, _, _ := strings.Cut(strings.TrimPrefix(u, "https://store.example/storage/o/"), "?")
	return name
}

func (s *fakeStorage) Upload(ctx context.Context, u string, headers map[string]string, body io.Reader, meta ports.ObjectMeta) (ports.ObjectMeta, error) {
	name := objectName(u)
	if headers["x-grant"] != "PUT" {
		return ports.ObjectMeta{}, fmt.Errorf("upload without the grant's headers: %v", headers)
	}
	if err := s.begin("PUT "+name, &s.upErrs); err != nil {
		return ports.ObjectMeta{}, err
	}
	content, err := io.ReadAll(body)
	if err != nil {
		return ports.ObjectMeta{}, &ports.CloudError{Op: "upload", Permanent: true, Index: -1, Err: err}
	}
	if err := s.wait(ctx); err != nil {
		return ports.ObjectMeta{}, err
	}
	if meta.Length >= 0 && int64(len(content)) != meta.Length {
		return ports.ObjectMeta{}, fmt.Errorf("content of %d bytes, %d announced", len(content), meta.Length)
	}
	meta.Length = int64(len(content))
	meta.LastModified = time.Now().Truncate(time.Second)
	meta.Custom = maps.Clone(meta.Custom)
	s.mu.Lock()
	s.objects[name] = storedObject{content: content, meta: meta}
	s.mu.Unlock()
	return meta, nil
}

func (s *fakeStorage) Download(ctx context.Context, u string, headers map[string]string, w io.Writer) (ports.ObjectMeta, error) {
	name := objectName(u)
	if err := s.begin("GET "+name, &s.downErrs); err != nil {
		return ports.ObjectMeta{}, err
	}
	s.mu.Lock()
	obj, ok := s.objects[name]
	s.mu.Unlock()
	if !ok {
		return ports.ObjectMeta{}, &ports.CloudError{Op: "download", Status: 404, Permanent: true, Index: -1, Err: ports.ErrNotFound}
	}
	if err := s.wait(ctx); err != nil {
		return ports.ObjectMeta{}, err
	}
	if _, err := w.Write(obj.content); err != nil {
		return ports.ObjectMeta{}, &ports.CloudError{Op: "download", Permanent: true, Index: -1, Err: err}
	}
	return obj.meta, nil
}

func (s *fakeStorage) callList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// holdTransfers makes the next transfers wait until the returned release
// is called; waiting is closed once one waits.
func (s *fakeStorage) holdTransfers() (waiting <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold, s.holding = make(chan struct{}), make(chan struct{})
	hold := s.hold
	return s.holding, func() {
		s.mu.Lock()
		s.hold = nil
		s.mu.Unlock()
		close(hold)
	}
}

var (
	errStoreDown = &ports.CloudError{Op: "upload", Status: 503, Index: -1, Err: errors.New("service unavailable")}
	errForbidden = &ports.CloudError{Op: "upload", Status: 403, Permanent: true, Index: -1, Err: errors.New("storage: URL expired")}
)

// storageRig is a rig with a fake store.
func storageRig() (*rig, *fakeStorage) {
	r := newRig(true)
	s := newFakeStorage()
	r.cfg.Storage = s
	return r, s
}

// inputFile writes content to a new file and returns its path.
func inputFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "input.bin")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// events collects SyncEvents, and on which goroutine they ran.
type events struct {
	mu  sync.Mutex
	evs []SyncEvent
}

func (e *events) add(ev SyncEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) all() []SyncEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]SyncEvent(nil), e.evs...)
}

func TestCreateStorageObject(t *testing.T) {
	long := strings.Repeat("a", 1020)
	tests := []struct {
		name, object, contentType string
		opts                      []StorageObjectOption
		wantName, wantType        string
		wantErr                   string
	}{
		{name: "prefixed", object: "cam/snap.jpg", contentType: "image/jpeg", wantName: testEP + "/cam/snap.jpg", wantType: "image/jpeg"},
		{name: "already prefixed", object: testEP + "/snap.jpg", wantName: testEP + "/snap.jpg", wantType: "application/octet-stream"},
		{name: "prefix disabled", object: "shared/snap.jpg", opts: []StorageObjectOption{WithoutEndpointPrefix()}, wantName: "shared/snap.jpg", wantType: "application/octet-stream"},
		{name: "empty", object: "", wantErr: `create storage object "": the name is empty, expected a name such as "photo.jpg"`},
		{name: "traversal", object: "../cloud.db", wantErr: `create storage object "../cloud.db": the name has the segment "..", expected non-empty segments other than "." and ".."`},
		{name: "empty segment", object: "a//b", wantErr: `create storage object "a//b": the name has the segment "", expected non-empty segments other than "." and ".."`},
		{name: "backslash", object: `a\b`, wantErr: `create storage object "a\\b": the name contains a backslash, expected '/'-separated segments`},
		{name: "control character", object: "a\nb", wantErr: `create storage object "a\nb": the name contains a control character`},
		{name: "not UTF-8", object: "a\xffb", wantErr: `create storage object "a\xffb": the name is not valid UTF-8`},
		{name: "too long with the prefix", object: long, wantErr: fmt.Sprintf(`create storage object %q: the name is 1029 bytes long with the endpoint prefix "dev-ep-1/", expected at most 1024`, long)},
		{name: "bad content type", object: "x", contentType: "image/", wantErr: `create storage object "x": content type "image/": mime: expected token after slash, expected a MIME type such as image/jpeg`},
	}
	r, _ := storageRig()
	d := r.device(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := d.CreateStorageObject(tt.object, tt.contentType, tt.opts...)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v\n want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Name() != tt.wantName || o.ContentType() != tt.wantType || o.SyncStatus() != NotInSync || o.URI() != "" || o.Length() != -1 {
				t.Errorf("object %q %q %s %q %d", o.Name(), o.ContentType(), o.SyncStatus(), o.URI(), o.Length())
			}
		})
	}
	t.Run("no storage transport", func(t *testing.T) {
		d := newRig(true).device(t)
		if _, err := d.CreateStorageObject("x", ""); err == nil || !strings.Contains(err.Error(), "Config.Storage is nil") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("not activated", func(t *testing.T) {
		r := newRig(false)
		r.cfg.Storage = newFakeStorage()
		if _, err := r.device(t).CreateStorageObject("x", ""); !errors.Is(err, ErrNotActivated) {
			t.Errorf("error = %v, want ErrNotActivated", err)
		}
	})
}

func TestSyncUploadsThenDownloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)
		up, err := d.CreateStorageObject("snap.jpg", "image/jpeg")
		if err != nil {
			t.Fatal(err)
		}
		var evs events
		up.OnSync(evs.add)
		if err := up.Sync(t.Context()); err == nil || !strings.Contains(err.Error(), "nothing to sync") || up.SyncStatus() != NotInSync {
			t.Fatalf("Sync without input = %v, status %s", err, up.SyncStatus())
		}
		if err := up.SetInputPath(inputFile(t, "jpeg bytes")); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(up.SetEncoding("identity"), up.SetMetadata("Camera", "front")); err != nil {
			t.Fatal(err)
		}
		waiting, release := s.holdTransfers()
		done := make(chan error, 1)
		go func() { done <- up.Sync(context.Background()) }()
		<-waiting
		if st := up.SyncStatus(); st != SyncPending {
			t.Errorf("status during the upload = %s", st)
		}
		if err := up.SetInputPath(inputFile(t, "other")); err == nil || !strings.Contains(err.Error(), "a sync is in progress (SYNC_PENDING)") {
			t.Errorf("SetInputPath during the sync = %v", err)
		}
		joined := make(chan error, 1)
		go func() { joined <- up.Sync(context.Background()) }() // waits for the same sync
		synctest.Wait()
		release()
		if err := errors.Join(<-done, <-joined); err != nil {
			t.Fatal(err)
		}
		wantURI := "https://store.example/storage/o/" + testEP + "/snap.jpg"
		if up.SyncStatus() != InSync || up.URI() != wantURI || up.Length() != 10 || up.LastModified().IsZero() {
			t.Errorf("after upload: %s %q %d %s", up.SyncStatus(), up.URI(), up.Length(), up.LastModified())
		}
		stored := s.objects[testEP+"/snap.jpg"]
		if string(stored.content) != "jpeg bytes" || stored.meta.ContentType != "image/jpeg" || stored.meta.ContentEncoding != "identity" || stored.meta.Custom["camera"] != "front" {
			t.Errorf("stored %q %+v", stored.content, stored.meta)
		}
		if got := evs.all(); len(got) != 1 || got[0].Status != InSync || got[0].Object != up || got[0].VirtualDevice != nil || got[0].Err != nil {
			t.Errorf("sync events %+v, want one InSync event", got)
		}
		if err := up.Sync(t.Context()); err != nil || len(s.callList()) != 2 {
			t.Errorf("Sync of an object in sync = %v, calls %q (want none new)", err, s.callList())
		}

		down, err := d.CreateStorageObject("snap.jpg", "")
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "copy.jpg")
		if err := down.SetOutputPath(out); err != nil {
			t.Fatal(err)
		}
		if err := down.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(out)
		if string(got) != "jpeg bytes" || down.ContentType() != "image/jpeg" || down.Encoding() != "identity" ||
			down.Metadata()["camera"] != "front" || down.Length() != 10 || down.SyncStatus() != InSync {
			t.Errorf("downloaded %q %s %q %v %d %s", got, down.ContentType(), down.Encoding(), down.Metadata(), down.Length(), down.SyncStatus())
		}
		if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 1 {
			t.Errorf("the output directory holds %d entries, want the file only (no temporary left)", len(entries))
		}
		want := []string{"URL PUT dev-ep-1/snap.jpg", "PUT dev-ep-1/snap.jpg", "URL GET dev-ep-1/snap.jpg", "GET dev-ep-1/snap.jpg"}
		if calls := s.callList(); !slicesEqual(calls, want) {
			t.Errorf("calls %q\n want %q", calls, want)
		}
		closeDevice(t, d)
	})
}

func TestSyncRetriesTransientFailures(t *testing.T) {
	tests := []struct {
		name       string
		urlErrs    []error
		upErrs     []error
		timeout    time.Duration
		wantGaps   []time.Duration // between transfer attempts
		wantErr    string
		wantStatus SyncStatus
	}{
		{name: "transient then success", upErrs: []error{errStoreDown, errStoreDown},
			wantGaps: []time.Duration{time.Second, 2 * time.Second}, wantStatus: InSync},
		{name: "Retry-After is honoured", upErrs: []error{&ports.CloudError{Op: "upload", Status: 429, RetryAfter: 9 * time.Second, Index: -1, Err: errors.New("slow down")}},
			wantGaps: []time.Duration{9 * time.Second}, wantStatus: InSync},
		{name: "a failed URL call is retried too", urlErrs: []error{errStoreDown}, wantStatus: InSync},
		{name: "permanent failure", upErrs: []error{errStoreDown, errForbidden},
			wantGaps: []time.Duration{time.Second}, wantStatus: SyncFailed,
			wantErr: `sync storage object "dev-ep-1/x.bin": upload: cloud answered 403: storage: URL expired`},
		{name: "refused credentials", urlErrs: []error{fmt.Errorf("get a storage URL: %w", ports.ErrUnauthorized)}, wantStatus: SyncFailed,
			wantErr: `sync storage object "dev-ep-1/x.bin": get a storage URL: unauthorized`},
		{name: "ctx ends during the backoff", upErrs: []error{errStoreDown, errStoreDown, errStoreDown}, timeout: 2500 * time.Millisecond,
			wantGaps: []time.Duration{time.Second}, wantStatus: SyncFailed,
			wantErr: `sync storage object "dev-ep-1/x.bin": context deadline exceeded after 2 attempt(s), the last one failed: upload: cloud answered 503: service unavailable`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, s := storageRig()
				s.urlErrs, s.upErrs = tt.urlErrs, tt.upErrs
				d := r.device(t, WithBackoff(time.Second, 30*time.Second))
				o, err := d.CreateStorageObject("x.bin", "")
				if err != nil {
					t.Fatal(err)
				}
				if err := o.SetInput(func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("data")), nil }, -1); err != nil {
					t.Fatal(err)
				}
				var evs events
				o.OnSync(evs.add)
				ctx := t.Context()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				err = o.Sync(ctx)
				if fmt.Sprint(err) != fmt.Sprint(nilIfEmpty(tt.wantErr)) || o.SyncStatus() != tt.wantStatus {
					t.Fatalf("Sync = %v, status %s\n want %s, %s", err, o.SyncStatus(), tt.wantErr, tt.wantStatus)
				}
				var gaps []time.Duration
				for i := 1; i < len(s.times); i++ {
					gaps = append(gaps, s.times[i].Sub(s.times[i-1]))
				}
				if tt.wantGaps != nil && !slicesEqual(gaps, tt.wantGaps) {
					t.Errorf("gaps between attempts %v, want %v", gaps, tt.wantGaps)
				}
				if got := evs.all(); len(got) != 1 || got[0].Status != tt.wantStatus || fmt.Sprint(got[0].Err) != fmt.Sprint(err) {
					t.Errorf("sync events %+v", got)
				}
				closeDevice(t, d)
			})
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestSetHoldsTheMessageUntilTheObjectIsInSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var sink errorSink
		v.OnError(sink.add)
		o, err := d.CreateStorageObject("snap.jpg", "image/jpeg")
		if err != nil {
			t.Fatal(err)
		}
		if err := o.SetInputPath(inputFile(t, "jpeg")); err != nil {
			t.Fatal(err)
		}
		var evs events
		o.OnSync(evs.add)
		settle(time.Second) // the reports go out
		waiting, release := s.holdTransfers()
		if err := v.Set("snapshot", o); err != nil {
			t.Fatal(err)
		}
		<-waiting
		if err := v.Set("brightness", 40); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		attrs := r.cloud.sentData(lightURN + ":attributes")
		if len(attrs) != 1 || field(attrs[0], "brightness") != int64(40) {
			t.Fatalf("sent during the upload: %+v, want the brightness only", attrs)
		}
		if _, ok := v.Get("snapshot"); ok || o.SyncStatus() != SyncPending {
			t.Errorf("snapshot known before the upload ended, or status %s", o.SyncStatus())
		}
		release()
		settle(time.Second)
		attrs = r.cloud.sentData(lightURN + ":attributes")
		uri := "https://store.example/storage/o/dev-ep-1/snap.jpg"
		if len(attrs) != 2 || field(attrs[1], "snapshot") != uri {
			t.Fatalf("sent %+v, want the snapshot after the upload", attrs)
		}
		if got, ok := v.Get("snapshot"); !ok || got.Any() != uri {
			t.Errorf("Get(snapshot) = %v, %v", got, ok)
		}
		if got := evs.all(); len(got) != 1 || got[0].VirtualDevice != v || got[0].Name != "snapshot" || got[0].Status != InSync {
			t.Errorf("sync events %+v", got)
		}
		// An object in sync is sent at once, without a new upload.
		if err := v.Set("snapshot", o); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		if n := len(r.cloud.sentData(lightURN + ":attributes")); n != 3 || len(s.callList()) != 2 {
			t.Errorf("%d attribute messages, calls %q; want a third message and no new transfer", n, s.callList())
		}
		if len(sink.all()) != 0 {
			t.Errorf("OnError got %q", sink.texts())
		}
		closeDevice(t, d)
	})
}

func TestFailedSyncReportsTheMessageAndSendsNothing(t *testing.T) {
	tests := []struct {
		name         string
		urlErrs      []error
		upErrs       []error
		wantErr      string
		wantMessages int
	}{
		{name: "the store refuses the upload", upErrs: []error{errForbidden}, wantMessages: 1,
			wantErr: `set attribute "snapshot": storage object "dev-ep-1/snap.jpg" did not sync, the message was not sent: sync storage object "dev-ep-1/snap.jpg": upload: cloud answered 403: storage: URL expired`},
		{name: "the cloud never names the object", urlErrs: []error{&ports.CloudError{Op: "get a storage URL", Status: 405, Permanent: true, Index: -1, Err: errors.New("classic storage only")}},
			wantErr: `set attribute "snapshot": storage object "dev-ep-1/snap.jpg" did not sync, the message was not sent: sync storage object "dev-ep-1/snap.jpg": get a storage URL: cloud answered 405: classic storage only`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, s := storageRig()
				s.urlErrs, s.upErrs = tt.urlErrs, tt.upErrs
				d := r.device(t)
				v := virtualDevice(t, d, "light_switch")
				var sink errorSink
				v.OnError(sink.add)
				o, _ := d.CreateStorageObject("snap.jpg", "")
				if err := o.SetInputPath(inputFile(t, "jpeg")); err != nil {
					t.Fatal(err)
				}
				if err := v.Set("snapshot", o); err != nil {
					t.Fatal(err)
				}
				settle(time.Minute)
				for _, m := range r.cloud.sentData(lightURN + ":attributes") {
					if field(m, "snapshot") != nil {
						t.Errorf("sent %+v", m)
					}
				}
				evs := sink.all()
				if len(evs) != 1 || evs[0].Err.Error() != tt.wantErr || len(evs[0].Messages) != tt.wantMessages {
					t.Fatalf("OnError got %q (%d events)\n want %s", sink.texts(), len(evs), tt.wantErr)
				}
				if tt.wantMessages > 0 && field(evs[0].Messages[0], "snapshot") != "https://store.example/storage/o/dev-ep-1/snap.jpg" {
					t.Errorf("reported message %+v", evs[0].Messages[0])
				}
				if _, ok := v.Get("snapshot"); ok || o.SyncStatus() != SyncFailed {
					t.Errorf("last-known snapshot set, or status %s", o.SyncStatus())
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestAlertWithAStorageObjectIsHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		o, _ := d.CreateStorageObject("press.jpg", "image/jpeg")
		if err := o.SetInputPath(inputFile(t, "jpeg")); err != nil {
			t.Fatal(err)
		}
		format := lightURN + ":button_pressed"
		if err := v.CreateAlert(format).Set("presses", o).Raise(); err == nil ||
			err.Error() != `alert "`+format+`": field "presses": want INTEGER, got *device.StorageObject` {
			t.Errorf("storage object on an INTEGER field: %v", err)
		}
		if err := v.Set("label", o); err == nil || err.Error() != `attribute "label": want STRING, got *device.StorageObject` {
			t.Errorf("storage object on a STRING attribute: %v", err)
		}
		settle(time.Second)
		waiting, release := s.holdTransfers()
		if err := v.CreateAlert(format).Set("presses", 2).Set("image", o).Raise(); err != nil {
			t.Fatal(err)
		}
		<-waiting
		settle(time.Second)
		alerts := func() []message.Message {
			var out []message.Message
			for _, m := range r.cloud.sent() {
				if m.Alert != nil {
					out = append(out, m)
				}
			}
			return out
		}
		if got := alerts(); len(got) != 0 {
			t.Fatalf("alert sent during the upload: %+v", got)
		}
		release()
		settle(time.Second)
		got := alerts()
		if len(got) != 1 || len(got[0].Alert.Fields) != 2 || got[0].Alert.Fields[1].Value != "https://store.example/storage/o/dev-ep-1/press.jpg" {
			t.Fatalf("alerts %+v", got)
		}
		closeDevice(t, d)
	})
}

func TestSetRefusesObjectsItCannotLink(t *testing.T) {
	r, _ := storageRig()
	d := r.device(t)
	v := virtualDevice(t, d, "light_switch")
	other := newRig(true)
	other.cfg.Storage = newFakeStorage()
	foreign, _ := other.device(t).CreateStorageObject("x", "")
	empty, _ := d.CreateStorageObject("empty", "")
	tests := []struct {
		name  string
		value *StorageObject
		want  string
	}{
		{"nil", nil, `attribute "snapshot": the storage object is nil`},
		{"another device's", foreign, `attribute "snapshot": storage object "dev-ep-1/x" was created by another device`},
		{"nothing to upload", empty, `attribute "snapshot": storage object "dev-ep-1/empty" has nothing to sync: set its input (SetInputPath) first`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := v.Set("snapshot", tt.value); err == nil || err.Error() != tt.want {
				t.Errorf("Set = %v\n want %s", err, tt.want)
			}
		})
	}
	closeDevice(t, d)
}

func TestCloseDuringAHeldSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var sink errorSink
		v.OnError(sink.add)
		o, _ := d.CreateStorageObject("snap.jpg", "")
		if err := o.SetInputPath(inputFile(t, "jpeg")); err != nil {
			t.Fatal(err)
		}
		waiting, _ := s.holdTransfers() // never released
		if err := v.Set("snapshot", o); err != nil {
			t.Fatal(err)
		}
		<-waiting
		start := time.Now()
		if err := d.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if time.Since(start) >= time.Second {
			t.Errorf("Close took %s: it waited for the upload", time.Since(start))
		}
		want := `set attribute "snapshot": storage object "dev-ep-1/snap.jpg" did not sync, the message was not sent: sync storage object "dev-ep-1/snap.jpg": context canceled`
		if texts := sink.texts(); len(texts) != 1 || texts[0] != want {
			t.Errorf("OnError got %q\n want %s", texts, want)
		}
		if o.SyncStatus() != SyncFailed {
			t.Errorf("status %s", o.SyncStatus())
		}
		if err := o.Sync(t.Context()); !errors.Is(err, ErrClosed) {
			t.Errorf("Sync after Close = %v, want ErrClosed", err)
		}
		if err := v.Set("snapshot", o); !errors.Is(err, ErrClosed) {
			t.Errorf("Set after Close = %v, want ErrClosed", err)
		}
	})
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSyncDoesNotRetryLocalFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)

		in := inputFile(t, "data")
		up, _ := d.CreateStorageObject("gone.bin", "")
		if err := up.SetInputPath(in); err != nil {
			t.Fatal(err)
		}
		os.Remove(in)
		err := up.Sync(t.Context())
		if err == nil || !strings.HasPrefix(err.Error(), `sync storage object "dev-ep-1/gone.bin": open the input: open `) || !errors.Is(err, os.ErrNotExist) || up.SyncStatus() != SyncFailed {
			t.Errorf("Sync of a vanished input = %v, status %s", err, up.SyncStatus())
		}

		dir := t.TempDir()
		down, _ := d.CreateStorageObject("gone.bin", "")
		if err := down.SetOutputPath(filepath.Join(dir, "sub", "x")); err == nil {
			t.Error("SetOutputPath accepted a missing directory")
		}
		if err := down.SetOutputPath(filepath.Join(dir, "x")); err != nil {
			t.Fatal(err)
		}
		os.Remove(dir)
		if err := down.Sync(t.Context()); err == nil || !strings.Contains(err.Error(), "create the output") || down.SyncStatus() != SyncFailed {
			t.Errorf("Sync to a vanished directory = %v, status %s", err, down.SyncStatus())
		}

		missing, _ := d.CreateStorageObject("never-uploaded.bin", "")
		if err := missing.SetOutputPath(filepath.Join(t.TempDir(), "x")); err != nil {
			t.Fatal(err)
		}
		if err := missing.Sync(t.Context()); !errors.Is(err, ports.ErrNotFound) || missing.SyncStatus() != SyncFailed {
			t.Errorf("Sync of a missing object = %v, status %s", err, missing.SyncStatus())
		}
		want := []string{"URL PUT dev-ep-1/gone.bin", "URL GET dev-ep-1/gone.bin", "URL GET dev-ep-1/never-uploaded.bin", "GET dev-ep-1/never-uploaded.bin"}
		if calls := s.callList(); !slicesEqual(calls, want) {
			t.Errorf("calls %q\n want %q (one attempt each)", calls, want)
		}
		closeDevice(t, d)
	})
}

func TestStorageObjectSetters(t *testing.T) {
	r, _ := storageRig()
	d := r.device(t)
	o, _ := d.CreateStorageObject("x", "")
	tests := []struct {
		name string
		err  error
		want string // the error's end
	}{
		{"metadata key", o.SetMetadata("bad key", "v"), `storage object "dev-ep-1/x": metadata key "bad key": expected letters, digits and - _ . only`},
		{"input directory", o.SetInputPath(t.TempDir()), ` is not a regular file`},
		{"nil input", o.SetInput(nil, 3), `storage object "dev-ep-1/x": input: open is nil or size 3 is below -1, expected a function and the size or -1`},
		{"empty output", o.SetOutputPath(""), `storage object "dev-ep-1/x": output: the path is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.HasSuffix(tt.err.Error(), tt.want) {
				t.Errorf("error = %v\n want %s", tt.err, tt.want)
			}
		})
	}
	if err := errors.Join(o.SetMetadata("Site", "lab"), o.SetMetadata("gone", "x"), o.SetMetadata("gone", "")); err != nil {
		t.Fatal(err)
	}
	if m := o.Metadata(); len(m) != 1 || m["site"] != "lab" {
		t.Errorf("metadata %v", m)
	}
	closeDevice(t, d)
}

// dataModel has a custom DATA format with a URI field.
const dataModel = `{"urn":"urn:test:camera","name":"camera","attributes":[{"name":"last","type":"URI"}],
 "formats":[{"urn":"urn:test:camera:clip","name":"clip","type":"DATA",
  "value":{"fields":[{"name":"clip","type":"URI","optional":false},{"name":"seconds","type":"INTEGER","optional":true}]}}]}`

func TestDataWithAnObjectInSyncIsSentAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, s := storageRig()
		d := r.device(t)
		m, err := model.Parse([]byte(dataModel))
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.CreateVirtualDevice(d.EndpointID(), m)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := d.CreateStorageObject("clip.mp4", "video/mp4")
		if err := o.SetInputPath(inputFile(t, "mp4")); err != nil {
			t.Fatal(err)
		}
		if err := o.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		data := v.CreateData("urn:test:camera:clip").Set("clip", "https://example.com/old").Set("clip", o).Set("seconds", 3)
		if err := data.Submit(); err != nil {
			t.Fatal(err)
		}
		// A later plain value replaces the object.
		if err := data.Set("clip", "https://example.com/other").Submit(); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		got := r.cloud.sentData("urn:test:camera:clip")
		if len(got) != 2 || field(got[0], "clip") != "https://store.example/storage/o/dev-ep-1/clip.mp4" || field(got[1], "clip") != "https://example.com/other" {
			t.Fatalf("sent %+v", got)
		}
		if n := len(s.callList()); n != 2 {
			t.Errorf("%d storage calls, want the 2 of the Sync", n)
		}
		closeDevice(t, d)
	})
}
