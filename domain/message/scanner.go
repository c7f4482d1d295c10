package message

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of arrays and objects the decoder accepts, so that
// hostile input cannot exhaust the stack. Real messages nest four levels deep.
const maxDepth = 256

// syntaxError is malformed JSON. Offset counts bytes from the start of the input
// given to Decode or UnmarshalJSON.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte offset %d: %s", e.offset, e.msg)
}

// scanner reads JSON from data, one token at a time, with no reflection. Its
// methods leave pos after what they read; skipSpace is called before every token.
type scanner struct {
	data    []byte
	pos     int
	depth   int
	scratch []byte // unescaped string bytes, reused
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) && isSpace(s.data[s.pos]) {
		s.pos++
	}
}

// errAt returns a syntax error at the current position.
func (s *scanner) errAt(format string, args ...any) error {
	if s.pos >= len(s.data) {
		return &syntaxError{offset: s.pos, msg: "unexpected end of input"}
	}
	return &syntaxError{offset: s.pos, msg: fmt.Sprintf(format, args...)}
}

// describe names the byte at the current position for an error message.
func (s *scanner) describe() string {
	if s.pos >= len(s.data) {
		return "end of input"
	}
	c := s.data[s.pos]
	if c >= 0x20 && c < utf8.RuneSelf {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// kind names the JSON type of the value starting at the current position.
func (s *scanner) kind() string {
	if s.pos >= len(s.data) {
		return "nothing"
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || isDigit(c):
		return "a number"
	}
	return "invalid JSON"
}

// typeError reports a value of the wrong JSON type at the current position,
// without consuming it. For invalid JSON it reports the syntax error instead.
func (s *scanner) typeError(want string) error {
	k := s.kind()
	if k == "invalid JSON" || k == "nothing" {
		return s.errAt("expected a value, found %s", s.describe())
	}
	return fmt.Errorf("expected %s, got %s", want, k)
}

// isNull consumes a null literal if one is next.
func (s *scanner) isNull() (bool, error) {
	if s.pos < len(s.data) && s.data[s.pos] == 'n' {
		return true, s.literal("null")
	}
	return false, nil
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		for i := 0; i < len(lit); i++ { // point at the first wrong byte
			if s.pos >= len(s.data) || s.data[s.pos] != lit[i] {
				break
			}
			s.pos++
		}
		return s.errAt("invalid literal, expected %q", lit)
	}
	s.pos += len(lit)
	return nil
}

// object reads an object, calling member for each key with the scanner placed
// at the value; member must consume the value. The key stays valid while the
// value is read but must be copied to be kept.
func (s *scanner) object(member func(key []byte) error) error {
	if s.pos >= len(s.data) || s.data[s.pos] != '{' {
		return s.typeError("an object")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if s.pos >= len(s.data) || s.data[s.pos] != '"' {
			return s.errAt("expected a string key, found %s", s.describe())
		}
		keyStart := s.pos
		key, err := s.stringBytes()
		if err != nil {
			return err
		}
		if len(key) != s.pos-keyStart-2 || (len(key) > 0 && &key[0] != &s.data[keyStart+1]) {
			// Unescaped into the scratch buffer: copy it so that it survives the value.
			key = slices.Clone(key)
		}
		s.skipSpace()
		if s.pos >= len(s.data) || s.data[s.pos] != ':' {
			return s.errAt("expected ':' after object key, found %s", s.describe())
		}
		s.pos++
		s.skipSpace()
		if err := member(key); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errAt("")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case '}':
			s.pos++
			s.depth--
			return nil
		default:
			return s.errAt("expected ',' or '}' after object member, found %s", s.describe())
		}
	}
}

// array reads an array, calling elem for each element with the scanner placed
// at it; elem must consume the element.
func (s *scanner) array(elem func(i int) error) error {
	if s.pos >= len(s.data) || s.data[s.pos] != '[' {
		return s.typeError("an array")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos >= len(s.data) {
			return s.errAt("")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
			s.skipSpace()
		case ']':
			s.pos++
			s.depth--
			return nil
		default:
			return s.errAt("expected ',' or ']' after array element, found %s", s.describe())
		}
	}
}

func (s *scanner) enter() error {
	if s.depth >= maxDepth {
		return s.errAt("nesting deeper than %d levels", maxDepth)
	}
	s.depth++
	return nil
}

// skipValue checks and skips one value of any type.
func (s *scanner) skipValue() error {
	if s.pos >= len(s.data) {
		return s.errAt("")
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object(func([]byte) error { return s.skipValue() })
	case c == '[':
		return s.array(func(int) error { return s.skipValue() })
	case c == '"':
		_, err := s.stringBytes()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || isDigit(c):
		_, err := s.number()
		return err
	}
	return s.errAt("expected a value, found %s", s.describe())
}

// str reads a string value; null reads as "".
func (s *scanner) str() (string, error) {
	if null, err := s.isNull(); null || err != nil {
		return "", err
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return "", s.typeError("a string")
	}
	b, err := s.stringBytes()
	return string(b), err
}

// stringBytes reads a string literal and returns its unescaped bytes: a view of
// the input when there is nothing to unescape, else the scratch buffer. Invalid
// UTF-8 and unpaired surrogates become U+FFFD, as in encoding/json.
func (s *scanner) stringBytes() ([]byte, error) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], nil
		case c == '\\' || c >= utf8.RuneSelf:
			return s.stringSlow(start)
		case c < 0x20:
			return nil, s.errAt("control character %s in string literal; it must be escaped", s.describe())
		}
		s.pos++
	}
	return nil, s.errAt("")
}

func (s *scanner) stringSlow(start int) ([]byte, error) {
	out := append(s.scratch[:0], s.data[start:s.pos]...)
	defer func() { s.scratch = out[:0] }()
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return out, nil
		case c < 0x20:
			return nil, s.errAt("control character %s in string literal; it must be escaped", s.describe())
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s.data[s.pos:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, s.data[s.pos:s.pos+size]...)
			}
			s.pos += size
		case c != '\\':
			out = append(out, c)
			s.pos++
		default:
			s.pos++
			if s.pos >= len(s.data) {
				return nil, s.errAt("")
			}
			e := s.data[s.pos]
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				s.pos++
				r, ok := s.hex4()
				if !ok {
					return nil, s.errAt("invalid \\u escape, expected four hexadecimal digits")
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate must be followed by an escaped low one.
					r2 := utf8.RuneError
					save := s.pos
					if s.pos+1 < len(s.data) && s.data[s.pos] == '\\' && s.data[s.pos+1] == 'u' {
						s.pos += 2
						if low, ok := s.hex4(); ok {
							r2 = low
						}
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
					} else {
						r = utf8.RuneError
						s.pos = save // the next escape stands on its own
					}
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return nil, s.errAt("invalid escape sequence '\\%c' in string literal", e)
			}
			s.pos++
		}
	}
	return nil, s.errAt("")
}

// hex4 reads four hexadecimal digits.
func (s *scanner) hex4() (rune, bool) {
	if len(s.data)-s.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s.data[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.pos += 4
	return r, true
}

// number reads a number literal, checking the JSON grammar, and returns it.
func (s *scanner) number() ([]byte, error) {
	start := s.pos
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		if !isDigit(c) && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		s.pos++
	}
	lit := s.data[start:s.pos]
	if !validNumber(string(lit)) {
		s.pos = start
		return nil, s.errAt("invalid number literal %q", lit)
	}
	return lit, nil
}

// numberValue converts a number literal to int64 when its value is integral and
// fits, else to float64. It fails only for a magnitude beyond float64.
func numberValue(lit []byte) (any, error) {
	if isIntLiteral(lit) {
		if v, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
			return v, nil
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, fmt.Errorf("number %s is out of the range of a 64-bit float", lit)
	}
	if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		return int64(f), nil
	}
	return f, nil
}

// isIntLiteral reports whether the valid number literal lit has no fraction or exponent.
func isIntLiteral(lit []byte) bool {
	for _, c := range lit {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// integer reads a number that must be integral and fit in int64; null reads as 0.
func (s *scanner) integer() (int64, error) {
	if null, err := s.isNull(); null || err != nil {
		return 0, err
	}
	if s.pos >= len(s.data) || (s.data[s.pos] != '-' && !isDigit(s.data[s.pos])) {
		return 0, s.typeError("an integer")
	}
	lit, err := s.number()
	if err != nil {
		return 0, err
	}
	v, err := numberValue(lit)
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case int64:
		return v, nil
	case float64:
		if v == math.Trunc(v) {
			return 0, fmt.Errorf("%s is out of the range of a 64-bit integer", lit)
		}
	}
	return 0, fmt.Errorf("expected an integer, got %s", lit)
}
