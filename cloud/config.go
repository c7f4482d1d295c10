package cloud

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud/store"
)

// Defaults of Config's zero fields.
const (
	DefaultMessageRetention = 7 * 24 * time.Hour
	DefaultMaxMessages      = 1_000_000
	DefaultDedupWindow      = 24 * time.Hour
	DefaultRequestTTL       = time.Hour
	DefaultMaxObjectBytes   = 64 << 20
	// MinAdminTokenLen is the shortest accepted admin token.
	MinAdminTokenLen = 16
)

// Config configures a Server. Zero durations and counts take the defaults above.
type Config struct {
	DataDir          string           // the store and stored objects live here (created if missing)
	PublicURL        string           // e.g. "https://127.0.0.1:8443": goes into provisioning files (TLV 1) and storage URLs
	MQTTURL          string           // e.g. "mqtts://127.0.0.1:8883": the broker devices use, for provisioning files with transport mqtt; empty = no MQTT
	TrustAnchors     [][]byte         // DER certificates (the cloud's CA) written into provisioning files
	AdminToken       string           // bearer token of the enterprise API
	Logger           *slog.Logger     // nil = discard
	Now              func() time.Time // nil = time.Now
	MessageRetention time.Duration    // default 7 days
	MaxMessages      int              // retention cap by count, default 1,000,000
	DedupWindow      time.Duration    // clientId replay window, default 24 h
	RequestTTL       time.Duration    // a request not answered by then is EXPIRED, default 1 h
	KDFIterations    int              // for v2 provisioning files; 0 = trust's default (tests lower it)
	MaxObjectBytes   int64            // largest stored object, default 64 MiB
	// Store is where the cloud keeps its records; nil means the embedded
	// bbolt store in DataDir/cloud.db. The Server owns it: Close closes it.
	// Stored objects stay under DataDir either way.
	Store store.Store
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("cloud config: "+format, args...)) }
	if c.DataDir == "" {
		add("DataDir is empty, expected the directory for the store and objects")
	}
	if c.PublicURL == "" {
		add("PublicURL is empty, expected the URL devices reach the cloud at, e.g. https://127.0.0.1:8443")
	} else if u, err := url.Parse(c.PublicURL); err != nil {
		add("PublicURL %q: %v", c.PublicURL, err)
	} else if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		add("PublicURL %q: expected scheme://host[:port] with scheme https or http and nothing after the host", c.PublicURL)
	}
	if c.MQTTURL != "" {
		if u, err := url.Parse(c.MQTTURL); err != nil {
			add("MQTTURL %q: %v", c.MQTTURL, err)
		} else if (u.Scheme != "mqtts" && u.Scheme != "mqtt") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			add("MQTTURL %q: expected scheme://host[:port] with scheme mqtts or mqtt and nothing after the host", c.MQTTURL)
		}
	}
	if len(c.AdminToken) < MinAdminTokenLen {
		add("AdminToken is %d characters, expected at least %d", len(c.AdminToken), MinAdminTokenLen)
	}
	for i, der := range c.TrustAnchors {
		if _, err := x509.ParseCertificate(der); err != nil {
			add("TrustAnchors[%d] is not a DER X.509 certificate: %v", i, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MessageRetention", c.MessageRetention}, {"DedupWindow", c.DedupWindow}, {"RequestTTL", c.RequestTTL}} {
		if d.v < 0 {
			add("%s is %s, expected a positive duration or 0 for the default", d.name, d.v)
		}
	}
	if c.MaxMessages < 0 {
		add("MaxMessages is %d, expected a positive count or 0 for the default", c.MaxMessages)
	}
	if c.KDFIterations < 0 {
		add("KDFIterations is %d, expected a positive count or 0 for the default", c.KDFIterations)
	}
	if c.MaxObjectBytes < 0 {
		add("MaxObjectBytes is %d, expected a positive size or 0 for the default", c.MaxObjectBytes)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with every zero field set.
func (c Config) withDefaults() Config {
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	c.MQTTURL = strings.TrimSuffix(c.MQTTURL, "/")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MessageRetention == 0 {
		c.MessageRetention = DefaultMessageRetention
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.RequestTTL == 0 {
		c.RequestTTL = DefaultRequestTTL
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = DefaultMaxObjectBytes
	}
	return c
}
