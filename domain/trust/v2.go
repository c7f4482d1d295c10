package trust

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// PBKDF2 iteration counts of format v2.
const (
	// DefaultIterations is what EncodeV2 writes: OWASP's floor for
	// PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet, 2023).
	DefaultIterations = 600_000
	// MinIterations and MaxIterations bound what EncodeV2 writes and Decode
	// accepts, so that a crafted file cannot make a node spin for hours.
	MinIterations = 1_000
	MaxIterations = 10_000_000
)

const (
	v2Version  = 2
	v2KDF      = "pbkdf2-sha256"
	v2AEAD     = "aes-256-gcm"
	v2SaltLen  = 16 // written
	v2SaltMax  = 64 // accepted
	v2NonceLen = 12
	v2KeyLen   = 32
	v2LineLen  = 76 // base64 characters per line
)

// Option adjusts EncodeV2.
type Option func(*options)

type options struct {
	iterations int
}

// WithIterations sets the PBKDF2 iteration count EncodeV2 writes; it must be
// within MinIterations..MaxIterations. Lower counts make tests fast. In
// production keep DefaultIterations: Decode then spends 0.2 to 0.4 s deriving
// the key on a 2-core amd64 server (BenchmarkDecodeV2), more on slower CPUs.
func WithIterations(n int) Option {
	return func(o *options) { o.iterations = n }
}

// EncodeV2 returns a as a v2 file (doc.go, "Format v2") sealed with a key
// derived from passphrase. rand supplies the 16-byte salt and the 12-byte
// nonce (crypto/rand.Reader in production). It fails if a does not Validate,
// passphrase is empty, the iteration count is out of range or rand fails.
func EncodeV2(a *Assets, passphrase string, rand io.Reader, opts ...Option) ([]byte, error) {
	const op = "encode v2 file"
	o := options{iterations: DefaultIterations}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.iterations < MinIterations || o.iterations > MaxIterations {
		return nil, fmt.Errorf("%s: iteration count %d is outside the accepted range %d..%d", op, o.iterations, MinIterations, MaxIterations)
	}
	if err := checkEncodeArgs(a, passphrase, rand); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	random := make([]byte, v2SaltLen+v2NonceLen)
	if _, err := io.ReadFull(rand, random); err != nil {
		return nil, fmt.Errorf("%s: read random salt and nonce: %w", op, err)
	}
	salt, nonce := random[:v2SaltLen], random[v2SaltLen:]
	header := fmt.Sprintf("%s%d kdf=%s iter=%d salt=%x aead=%s nonce=%x",
		v2Magic, v2Version, v2KDF, o.iterations, salt, v2AEAD, nonce)
	aead, err := v2Cipher(passphrase, salt, o.iterations)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	sealed := aead.Seal(nil, nonce, marshalRecords(a), []byte(header))

	var out []byte
	out = append(out, header...)
	out = append(out, '\n')
	return appendWrapped(out, base64.StdEncoding.EncodeToString(sealed), v2LineLen, "\n", true), nil
}

// checkEncodeArgs checks what both encoders need.
func checkEncodeArgs(a *Assets, passphrase string, rand io.Reader) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if passphrase == "" {
		return errors.New("passphrase is empty")
	}
	if rand == nil {
		return errors.New("random source is nil")
	}
	return nil
}

// appendWrapped appends s in lines of n characters separated by sep, with sep
// after the last line too when final is set.
func appendWrapped(dst []byte, s string, n int, sep string, final bool) []byte {
	for len(s) > 0 {
		k := min(n, len(s))
		dst = append(dst, s[:k]...)
		s = s[k:]
		if len(s) > 0 || final {
			dst = append(dst, sep...)
		}
	}
	return dst
}

// v2Cipher derives the v2 key and returns its AES-256-GCM.
func v2Cipher(passphrase string, salt []byte, iterations int) (cipher.AEAD, error) {
	key, err := pbkdf2.Key(sha256.New, passphrase, salt, iterations, v2KeyLen)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return cipher.NewGCM(block)
}

// v2Header holds the parsed header line.
type v2Header struct {
	iterations int
	salt       []byte
	nonce      []byte
}

// decodeV2 decodes data, which starts with v2Magic.
func decodeV2(data []byte, passphrase string) (*Assets, error) {
	const op = "decode v2 file"
	line, body, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return nil, formatError(op, "the header line has no line break after it; the file is truncated")
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	h, err := parseV2Header(string(line))
	if err != nil {
		return nil, formatError(op, "header: %v", err)
	}
	sealed, err := decodeBase64(body, len(data)-len(body), true, "base64 and line breaks")
	if err != nil {
		return nil, formatError(op, "%v", err)
	}
	if len(sealed) < 16 {
		return nil, formatError(op, "the sealed payload is %d bytes; expected at least the 16-byte GCM tag", len(sealed))
	}
	aead, err := v2Cipher(passphrase, h.salt, h.iterations)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	plain, err := aead.Open(nil, h.nonce, sealed, line)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, ErrPassphrase)
	}
	a, err := unmarshalRecords(plain)
	if err != nil {
		return nil, formatError(op, "payload: %v", err)
	}
	if err := a.Validate(); err != nil {
		return nil, formatError(op, "contents: %v", err)
	}
	return a, nil
}

// parseV2Header parses the header line (without its line ending).
func parseV2Header(line string) (v2Header, error) {
	fields := strings.Split(line, " ")
	if v := strings.TrimPrefix(fields[0], v2Magic); v != strconv.Itoa(v2Version) {
		return v2Header{}, fmt.Errorf("version %q is not supported; this build reads version %d", head([]byte(v), 16), v2Version)
	}
	const want = "iotnode-trust/2 kdf=pbkdf2-sha256 iter=N salt=HEX aead=aes-256-gcm nonce=HEX"
	if len(fields) != 6 {
		return v2Header{}, fmt.Errorf("%d space-separated fields; expected 6: %s", len(fields), want)
	}
	var h v2Header
	for i, key := range []string{"", "kdf", "iter", "salt", "aead", "nonce"} {
		if i == 0 {
			continue
		}
		value, ok := strings.CutPrefix(fields[i], key+"=")
		if !ok {
			return v2Header{}, fmt.Errorf("field %d is %q; expected %s=… (%s)", i+1, head([]byte(fields[i]), 24), key, want)
		}
		var err error
		switch key {
		case "kdf":
			if value != v2KDF {
				err = fmt.Errorf("key derivation %q is not supported; expected %s", head([]byte(value), 24), v2KDF)
			}
		case "aead":
			if value != v2AEAD {
				err = fmt.Errorf("cipher %q is not supported; expected %s", head([]byte(value), 24), v2AEAD)
			}
		case "iter":
			h.iterations, err = parseIterations(value)
		case "salt":
			h.salt, err = parseHex("salt", value, v2SaltLen, v2SaltMax)
		case "nonce":
			h.nonce, err = parseHex("nonce", value, v2NonceLen, v2NonceLen)
		}
		if err != nil {
			return v2Header{}, err
		}
	}
	return h, nil
}

// parseIterations parses a decimal iteration count without leading zeros and
// checks its range.
func parseIterations(s string) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("iteration count %q is not a decimal number without leading zeros", head([]byte(s), 24))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < MinIterations || n > MaxIterations {
		return 0, fmt.Errorf("iteration count %s is outside the accepted range %d..%d", head([]byte(s), 24), MinIterations, MaxIterations)
	}
	return n, nil
}

// parseHex decodes lowercase hexadecimal of lo..hi bytes.
func parseHex(name, s string, lo, hi int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || strings.ToLower(s) != s {
		return nil, fmt.Errorf("%s %q is not lowercase hexadecimal", name, head([]byte(s), 24))
	}
	if len(b) < lo || len(b) > hi {
		if lo == hi {
			return nil, fmt.Errorf("%s is %d bytes; expected %d", name, len(b), lo)
		}
		return nil, fmt.Errorf("%s is %d bytes; expected %d..%d", name, len(b), lo, hi)
	}
	return b, nil
}

// decodeBase64 decodes block, which starts at offset off of the file,
// ignoring spaces, tabs, CR and LF; expected describes what may be there, for
// the error. Strict decoding rejects missing padding and non-zero trailing
// bits (v2); lenient decoding accepts both (Oracle's readers do).
func decodeBase64(block []byte, off int, strict bool, expected string) ([]byte, error) {
	clean := make([]byte, 0, len(block))
	where := make([]int, 0, len(block)) // file offset of each clean byte
	for i, c := range block {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/', c == '=':
			clean = append(clean, c)
			where = append(where, off+i)
		default:
			return nil, fmt.Errorf("base64 block: unexpected byte %q at offset %d of the file; expected %s", c, off+i, expected)
		}
	}
	enc := base64.StdEncoding.Strict()
	if !strict {
		clean = bytes.TrimRight(clean, "=")
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(clean)))
	n, err := enc.Decode(out, clean)
	if err != nil {
		var bad base64.CorruptInputError
		if errors.As(err, &bad) && int(bad) < len(where) {
			return nil, fmt.Errorf("base64 block: invalid base64 at offset %d of the file", where[bad])
		}
		return nil, fmt.Errorf("base64 block: invalid base64: the last group of 4 characters is incomplete")
	}
	return out[:n], nil
}
