// Package message holds the wire messages of the device protocol (protocol.md §3)
// and their compact JSON form, shared by the device library and the reference cloud.
//
// It does four things:
//
//   - models the envelope and the five payloads (DATA, ALERT, REQUEST, RESPONSE,
//     RESOURCES_REPORT) as plain Go values ([Message] and its payload types);
//   - encodes them to compact JSON by hand, without reflection ([AppendJSON],
//     [Encode], [Message.MarshalJSON]), and predicts the encoded size exactly and
//     cheaply ([EncodedSize], [ArraySize]) so that batches can be cut to a byte
//     budget such as a client's acceptBytes;
//   - decodes JSON received from outside ([Decode], [Message.UnmarshalJSON]):
//     lenient where Oracle's clients are (missing optional keys, unknown keys,
//     null, empty properties), strict where data would otherwise be wrong (wrong
//     JSON types, bad base64, unknown enumerations, a payload that does not fit the
//     type). Every decoding error is a [*DecodeError] naming the message index and
//     the field;
//   - applies the semantic checks a server makes on a device's message
//     ([Message.Validate]).
//
// Compact output matters: Oracle's Java client scans the raw response bytes and
// expects the byte after '[' or ',' to be '{', so nothing here ever emits
// whitespace between tokens.
//
// # Encoding
//
// Encoding rules, shared by AppendJSON and EncodedSize:
//
//   - Output is compact: no whitespace between tokens, ever.
//   - Envelope keys, in order: id (only when non-empty), clientId, source,
//     destination, sender, priority, reliability, eventTime, type, properties
//     (only when non-empty), payload (only when the payload for Type is non-nil).
//   - Map keys (properties, headers, params) are written in sorted order so that
//     the output is deterministic.
//   - Strings are escaped as encoding/json does with HTML escaping turned off:
//     '"' and '\' are backslash-escaped, control characters use \b \f \n \r \t
//     or \u00XX, U+2028 and U+2029 are written as \u2028 and \u2029 (for
//     JavaScript consumers), and each byte of invalid UTF-8 becomes \ufffd. '<',
//     '>' and '&' are written as they are: nothing here ends up inside HTML, and
//     Oracle's clients do not escape them either.
//   - Times (EventTime and time.Time field values) are epoch milliseconds; the
//     zero time.Time is written as 0 (and 0 decodes back to the zero time.Time).
//   - float64 values use the shortest representation that round-trips, in the
//     same format as encoding/json; NaN and ±Inf cannot be encoded.
//
// # Decoding
//
// Decoding rules, for JSON from outside (devices, Oracle's cloud, files):
//
//   - Keys are matched exactly (case-sensitive), as Oracle's Java client does.
//     Unknown keys are checked for JSON syntax and ignored. A repeated key
//     overrides the earlier one, except in "data" objects, whose fields are kept
//     in order, repeats included (Validate reports repeats).
//   - null stands for a missing value. A missing optional key leaves the zero
//     value, with two defaults: priority LOW and reliability BEST_EFFORT (Oracle's
//     library defaults). Empty objects and arrays decode as nil.
//   - "type" is required: without it the payload cannot be read. A missing or null
//     payload leaves all payload pointers nil (Validate reports it).
//   - Strings may use any JSON escape; invalid UTF-8 and unpaired surrogates
//     become U+FFFD.
//   - Numbers in "data" decode to int64 when their value is integral and fits,
//     else to float64; a magnitude beyond float64 is an error.
//   - eventTime must be an integer number of epoch milliseconds within the
//     JavaScript Date range (±8.64e15); 0 decodes to the zero time.Time, any other
//     value to a time in UTC.
//   - Bodies are standard base64, padded or not (as java.util.Base64's decoder accepts).
//   - Nesting deeper than 256 levels is rejected.
//
// # Purity
//
// The package is pure: it imports only the standard library, does no I/O, reads
// no clock, logs nothing and starts no goroutines. All functions are safe for
// concurrent use as long as the messages they are given are not being modified.
package message
