package trust

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// Constants of Oracle's unified format (doc.go, "Oracle's unified format").
const (
	oracleVersion    = '!' // 33
	oracleIterations = 10_000
	oracleKeyLen     = 16 // AES-128
	oracleLineLen    = 76 // MIME base64
)

// EncodeOracle returns a in Oracle's unified format, byte for byte as
// Oracle's Java library writes it, encrypted with a key derived from
// passphrase; rand supplies the 16-byte IV (crypto/rand.Reader in production).
//
// The format is weak (no MAC, 10,000 iterations of PBKDF2-HMAC-SHA1): use it
// only for devices that run Oracle's own client libraries. Besides what
// EncodeV2 refuses, it refuses an mqtts server URI and an IPv6-literal host,
// which Oracle's JavaScript reader cannot parse.
func EncodeOracle(a *Assets, passphrase string, rand io.Reader) ([]byte, error) {
	const op = "encode oracle file"
	if err := checkEncodeArgs(a, passphrase, rand); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	u, err := url.Parse(a.ServerURI)
	if err != nil { // Validate parsed it already
		return nil, fmt.Errorf("%s: server URI %q: %w", op, a.ServerURI, err)
	}
	switch {
	case u.Scheme == "mqtts":
		return nil, fmt.Errorf("%s: server URI %q: Oracle's JavaScript library cannot read an mqtts URI from this format; use the cloud's https URI",
			op, a.ServerURI)
	case strings.Contains(u.Hostname(), ":"):
		return nil, fmt.Errorf("%s: server URI %q: Oracle's JavaScript library cannot read an IPv6-literal host from this format; use a host name",
			op, a.ServerURI)
	}

	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("%s: read random IV: %w", op, err)
	}
	block, err := oracleCipher(passphrase, iv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	plain := marshalRecords(a)
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	blob := make([]byte, aes.BlockSize+len(plain))
	copy(blob, iv)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(blob[aes.BlockSize:], plain)

	var out []byte
	out = append(out, oracleVersion)
	out = appendWrapped(out, base64.StdEncoding.EncodeToString(blob), oracleLineLen, "\r\n", false)
	out = append(out, "\n#serverUri:"...)
	out = append(out, a.ServerURI...)
	out = append(out, "\n#clientId:"...)
	out = append(out, a.ClientID...)
	out = append(out, '\n')
	return out, nil
}

// oracleCipher derives the key of Oracle's format (the IV is the salt).
func oracleCipher(passphrase string, iv []byte) (cipher.Block, error) {
	key, err := pbkdf2.Key(sha1.New, passphrase, iv, oracleIterations, oracleKeyLen)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	return aes.NewCipher(key)
}

// decodeOracle decodes data, which starts with oracleVersion.
func decodeOracle(data []byte, passphrase string) (*Assets, error) {
	const op = "decode oracle file"
	b64 := data[1:]
	if i := bytes.IndexByte(b64, '#'); i >= 0 {
		b64 = b64[:i]
	}
	blob, err := decodeBase64(b64, 1, false, "base64, line breaks or a '#' comment")
	if err != nil {
		return nil, formatError(op, "%v", err)
	}
	if len(blob) < 2*aes.BlockSize || len(blob)%aes.BlockSize != 0 {
		return nil, formatError(op, "the encrypted block is %d bytes; expected a 16-byte IV and a whole number (at least one) of 16-byte AES blocks", len(blob))
	}

	iv, ct := blob[:aes.BlockSize], blob[aes.BlockSize:]
	block, err := oracleCipher(passphrase, iv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	plain, ok := unpad(plain)
	if !ok {
		return nil, fmt.Errorf("%s: %w", op, ErrPassphrase)
	}
	a, err := unmarshalRecords(plain)
	if err != nil {
		// Without a MAC, broken records are what a wrong key produces.
		return nil, fmt.Errorf("%s: %w", op, ErrPassphrase)
	}
	if err := a.Validate(); err != nil {
		return nil, formatError(op, "contents: %v", err)
	}
	return a, nil
}

// unpad strips PKCS#7 padding, reporting whether it was well formed.
func unpad(p []byte) ([]byte, bool) {
	if len(p) == 0 {
		return nil, false
	}
	n := int(p[len(p)-1])
	if n == 0 || n > aes.BlockSize || n > len(p) {
		return nil, false
	}
	for _, c := range p[len(p)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return p[:len(p)-n], true
}
