// Package trust encodes and decodes provisioning files (trusted-assets
// stores): the encrypted file that tells a device which server to talk to,
// who it is (activation ID, shared secret, endpoint ID and key pair once
// activated), which certificates to trust, and, for a gateway, the
// credentials of its indirectly connected devices.
//
// The node reads and rewrites its own file; the reference cloud writes files
// for new devices. Both use this package, so the bytes are defined once.
//
// The package is pure: bytes in, bytes out. It does no file I/O, never logs,
// never reads the clock and starts no goroutines; randomness comes from the
// io.Reader the caller passes (crypto/rand.Reader in production, a fixed
// reader in tests). Every function is safe for concurrent use. It imports only
// the standard library.
//
// # Two formats
//
// Decode recognises both formats by their first bytes (after optional leading
// white space and a UTF-8 byte-order mark):
//
//   - "iotnode-trust/" starts our format v2 (FormatV2), the default. It is
//     authenticated: a wrong passphrase or a changed byte gives ErrPassphrase
//     (or ErrFormat, if the change makes the header unreadable), never a
//     half-read file.
//   - "!" starts Oracle's "unified" format (FormatOracle), which Oracle's Java,
//     JavaScript and Python device libraries read and write. It has no MAC and a
//     weak key derivation; we write it only so that devices running Oracle's own
//     libraries can use our cloud unchanged.
//
// Anything else is ErrFormat. Oracle reserved the version bytes 34..126 for
// later versions of its format and never used them; our magic starts with "i"
// (105), so Oracle's readers reject a v2 file as an unknown version, which is
// the right outcome.
//
// # The payload: tag-length-value records (both formats)
//
// The plaintext is a sequence of records: a 1-byte tag, a 2-byte big-endian
// unsigned length n, then n bytes of value. Hence no value may exceed 65535
// bytes (Validate checks this).
//
//	tag  field                 value
//	1    server URI            UTF-8 "scheme://host:port", scheme https, mqtts or http
//	2    client ID             UTF-8 activation ID
//	3    shared secret         raw bytes (Oracle writes UTF-8 text)
//	4    endpoint ID           UTF-8, absent until activation
//	5    trust anchor          one X.509 DER certificate per record, may repeat
//	6    private key           PKCS#8 DER, absent until activation
//	7    public key            SubjectPublicKeyInfo DER, absent until activation
//	8    connected device      nested records: tag 2 (hardware ID) then tag 3
//	                           (its shared secret), nothing else; one per device
//
// Encoders write tags in the order 1, 2, 3, (4), (5...), (6), (7), (8...) and
// no other tag. Decoders accept any order, ignore unknown tags (as Oracle's Java
// reader does, so that a later writer may add a field that old readers can skip
// safely), and reject a missing tag 1, 2 or 3, a repeated tag 1, 2, 3, 4, 6 or 7,
// a record running past the end, and a tag 8 whose value is not exactly one
// tag 2 record followed by one tag 3 record.
//
// # Format v2, byte by byte
//
// A v2 file is ASCII text: one header line, then the sealed payload in base64.
// Text rather than binary so that the file survives copy and paste, e-mail,
// YAML block scalars and terminals, and so that "head -1" tells a human what it
// is and how it is protected. Example (salt and nonce shortened here):
//
//	iotnode-trust/2 kdf=pbkdf2-sha256 iter=600000 salt=00010203… aead=aes-256-gcm nonce=1011…
//	q3N2y0b8…(76 base64 characters per line)
//	…==
//
// The header line is exactly six fields separated by single spaces (0x20), in
// this order, and ends with LF (0x0A):
//
//  1. "iotnode-trust/2": the magic "iotnode-trust/" and the format version in
//     decimal. Decode rejects any other version with ErrFormat.
//  2. "kdf=pbkdf2-sha256": the key is PBKDF2-HMAC-SHA256(passphrase as UTF-8
//     bytes, salt, iter, 32 bytes).
//  3. "iter=N": the PBKDF2 iteration count in decimal without leading zeros.
//     EncodeV2 writes DefaultIterations (600,000, OWASP's 2023 floor for
//     PBKDF2-HMAC-SHA256) unless WithIterations says otherwise. Decode accepts
//     MinIterations..MaxIterations (1,000..10,000,000) only, so a crafted file
//     cannot make a node spin for hours; anything else is ErrFormat.
//  4. "salt=H": the salt, 16 to 64 bytes as lowercase hexadecimal. EncodeV2
//     writes 16 random bytes.
//  5. "aead=aes-256-gcm": the payload is sealed with AES-256-GCM (16-byte tag).
//  6. "nonce=H": the 12-byte GCM nonce as lowercase hexadecimal, random.
//
// The associated data of the seal is the whole header line without its line
// ending, so no header byte can be changed without Decode noticing.
//
// After the header come the GCM ciphertext and its 16-byte tag, appended, in
// standard base64 with padding (RFC 4648 §4), in lines of 76 characters each
// ended by LF. Decode ignores spaces, tabs, CR and LF anywhere in this block
// (so CRLF line endings and re-wrapped lines are fine), accepts CR before the
// header's LF, and rejects any other byte and any non-canonical base64.
// The plaintext is the records above; after a successful open, records that
// break the rules above, or contents that fail Validate, are ErrFormat (the
// passphrase was right, the writer was wrong).
//
// # Oracle's unified format
//
// As written by Oracle's Java UnifiedTrustedAssetsManager and JavaScript
// UnifiedTrustStore (library 19.3.2), and reproduced byte for byte by
// EncodeOracle:
//
//	"!"                         the version byte, 33
//	base64(IV ‖ ciphertext)     MIME base64: 76-character lines separated by
//	                            CRLF, no line break after the last line
//	"\n#serverUri:" URI "\n#clientId:" clientID "\n"
//	                            comment lines; readers ignore them, but Oracle's
//	                            JavaScript reader needs at least one "#"
//
// IV is 16 random bytes. The key is PBKDF2-HMAC-SHA1(passphrase, salt = IV,
// 10,000 iterations, 16 bytes); the cipher is AES-128-CBC with PKCS#7 padding.
// Decode takes the base64 block to end at the first "#" (or at the end of the
// file) and ignores white space and missing padding in it, so one-line
// (JavaScript) and MIME (Java) files both read. Since nothing authenticates the file, a wrong passphrase is
// recognised by bad padding, broken records or a missing tag 1, 2 or 3, and is
// reported as ErrPassphrase without saying which.
//
// Oracle's own writers differ in small ways that Decode accepts: the
// JavaScript library writes the base64 on one line followed by "\n#" and the
// comment lines it read (just "#" if none), and Oracle's Java writer keeps only
// the first trust anchor (its reader takes them all). EncodeOracle writes
// every trust anchor, as the JavaScript writer does.
//
// EncodeOracle refuses what Oracle's JavaScript reader cannot parse: an mqtts
// URI and an IPv6-literal host. Oracle's JavaScript reader takes each character
// of the passphrase as one byte, while Java and this package use UTF-8, so keep
// Oracle-format passphrases ASCII.
package trust
