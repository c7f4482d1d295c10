package trust

import (
	"bytes"
	"errors"
	"fmt"
)

// Format names a provisioning-file format. The zero value is no format.
type Format int

const (
	// FormatV2 is our authenticated format (doc.go, "Format v2").
	FormatV2 Format = iota + 1
	// FormatOracle is Oracle's unified format (doc.go, "Oracle's unified format").
	FormatOracle
)

// String returns "v2" or "oracle" (ParseFormat's inverse).
func (f Format) String() string {
	switch f {
	case FormatV2:
		return "v2"
	case FormatOracle:
		return "oracle"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat returns the Format named s, "v2" or "oracle".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "v2":
		return FormatV2, nil
	case "oracle":
		return FormatOracle, nil
	}
	return 0, fmt.Errorf("provisioning-file format %q is not supported; expected v2 or oracle", s)
}

var (
	// ErrPassphrase means the passphrase is wrong or the file was changed
	// after it was written. Decode never says which, nor what it saw: for an
	// authenticated v2 file it cannot know, and for an Oracle file guessing
	// would only help an attacker.
	ErrPassphrase = errors.New("wrong passphrase or damaged file")

	// ErrFormat means the bytes are not a provisioning file, are a version or
	// variant this package does not read, or are malformed before (or, for v2,
	// after) decryption. The wrapping error says what was found and expected.
	ErrFormat = errors.New("unsupported or malformed provisioning file")
)

// formatError returns an error for operation op wrapping ErrFormat with a
// detail.
func formatError(op, detail string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", op, ErrFormat, fmt.Sprintf(detail, args...))
}

// v2Magic starts every v2 file; the version number follows it.
const v2Magic = "iotnode-trust/"

// Decode detects the format of data, decrypts it with passphrase and returns
// the assets, which pass Validate. It does not retain data; the returned
// Assets share no memory with it.
//
// Errors wrap ErrPassphrase (wrong passphrase or tampered file) or ErrFormat
// (not a supported provisioning file); any other error comes from the key
// derivation in FIPS-only mode. The returned Format is the detected format,
// also on error once detection succeeded, and 0 when it did not.
//
// Decode costs one key derivation: for a v2 file, the iterations its header
// asks for (at most MaxIterations); for an Oracle file, 10,000 of HMAC-SHA1.
// Files rejected by cheap checks (header, base64, lengths) cost none.
func Decode(data []byte, passphrase string) (*Assets, Format, error) {
	const op = "decode provisioning file"
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	data = bytes.TrimLeft(data, " \t\r\n")
	switch {
	case len(data) == 0:
		return nil, 0, formatError(op, "the file is empty")
	case bytes.HasPrefix(data, []byte(v2Magic)):
		a, err := decodeV2(data, passphrase)
		return a, FormatV2, err
	case data[0] == oracleVersion:
		a, err := decodeOracle(data, passphrase)
		return a, FormatOracle, err
	case data[0] == '{':
		return nil, 0, formatError(op, "it looks like JSON (Oracle's legacy JSON trusted-assets store?), which is not supported; expected a file starting with %q (v2) or \"!\" (Oracle unified format)", v2Magic+"2")
	}
	return nil, 0, formatError(op, "it starts with %q; expected %q (v2) or \"!\" (Oracle unified format)", head(data, 16), v2Magic+"2")
}

// head returns at most n bytes of b as a string, for error messages.
func head(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
