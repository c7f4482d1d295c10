package message

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
)

// MethodOverrideHeader is the request header that overrides a REQUEST's method
// (protocol.md §3c); the cloud sends attribute sets as POST with "PATCH" in it.
const MethodOverrideHeader = "x-http-method-override"

// EffectiveMethod returns the method a device dispatches r on, upper-cased: the
// first value of the x-http-method-override header when it is present and not
// empty, else r.Method. The header name is matched case-insensitively; when it
// is present under several spellings, the lower-case one wins, then the first
// in sorted order, so that the result never depends on map order.
func (r *Request) EffectiveMethod() string {
	if vals, ok := r.Headers[MethodOverrideHeader]; ok && len(vals) > 0 && vals[0] != "" {
		return strings.ToUpper(vals[0])
	}
	best := ""
	found := false
	for name, vals := range r.Headers {
		if len(vals) == 0 || vals[0] == "" || !strings.EqualFold(name, MethodOverrideHeader) {
			continue
		}
		if !found || name < best {
			best, found = name, true
		}
	}
	if found {
		return strings.ToUpper(r.Headers[best][0])
	}
	return strings.ToUpper(r.Method)
}

// ReconciliationMark returns the reconciliationMark of a RESOURCES_REPORT
// (protocol.md §3c): the lower-case hex MD5 of the UTF-8 bytes of the resource
// paths concatenated in the given order, with no separator. MD5 is what Oracle's protocol
// prescribes; the mark only detects drift and is not a security measure.
func ReconciliationMark(paths []string) string {
	h := md5.New()
	for _, p := range paths {
		h.Write([]byte(p))
	}
	var sum [md5.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}
