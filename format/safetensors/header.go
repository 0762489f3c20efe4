package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/kvant-dev/kvant/format"
)

// MaxHeaderSize is the largest JSON header accepted, in bytes. It matches the
// reference implementation's limit (100 MB); a larger declared length is far
// more likely corruption or an attack than a real checkpoint.
const MaxHeaderSize = 100_000_000

// MaxRank bounds the number of dimensions of a tensor. NumPy's limit is 64;
// no checkpoint comes close, so a longer shape is corruption, and the bound
// keeps a hostile header from allocating huge shape slices.
const MaxRank = 64

// metadataKey is the reserved header key holding free-form string metadata.
const metadataKey = "__metadata__"

// dtypeCodes maps safetensors dtype codes onto kvant's plain dtypes.
var dtypeCodes = map[string]format.DType{
	"F64": format.F64, "F32": format.F32, "F16": format.F16, "BF16": format.BF16,
	"I64": format.I64, "I32": format.I32, "I16": format.I16, "I8": format.I8,
	"U64": format.U64, "U32": format.U32, "U16": format.U16, "U8": format.U8,
	"BOOL": format.Bool,
}

// dtypeNames is dtypeCodes inverted, for the writer.
var dtypeNames = func() map[format.DType]string {
	m := make(map[format.DType]string, len(dtypeCodes))
	for code, d := range dtypeCodes {
		m[d] = code
	}
	return m
}()

// headerEntry is one tensor as the JSON header declares it, not yet
// validated against the data buffer.
type headerEntry struct {
	name       string
	dtype      string
	shape      []int64
	begin, end int64
	at         int64 // file offset of the entry's key, for error messages
}

type header struct {
	entries  []headerEntry // in JSON order
	metadata map[string]string
}

// headerParser walks the JSON header token by token. encoding/json's
// Unmarshal silently keeps the last of duplicate keys; a duplicated tensor
// name must be an error, so the object is read key by key instead.
type headerParser struct {
	b    []byte
	dec  *json.Decoder
	base int64 // file offset of the header's first byte
	file string
}

// parseHeader parses the JSON header b, which starts at file offset base.
func parseHeader(b []byte, base int64, file string) (*header, error) {
	if !utf8.Valid(b) {
		// encoding/json would quietly turn bad bytes into U+FFFD, changing
		// tensor names; the reference rejects the header, and so do we.
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, newError(file, "", base+int64(i), ErrInvalidHeader, "header is not valid UTF-8")
	}
	p := &headerParser{b: b, dec: json.NewDecoder(bytes.NewReader(b)), base: base, file: file}
	p.dec.UseNumber()
	if err := p.expectDelim('{', ""); err != nil {
		return nil, err
	}
	h := &header{}
	seen := make(map[string]int64)
	for p.dec.More() {
		keyAt := p.offset()
		tok, err := p.token("")
		if err != nil {
			return nil, err
		}
		key := tok.(string) // Token guarantees object keys are strings
		if first, dup := seen[key]; dup {
			if key == metadataKey {
				return nil, newError(file, "", keyAt, ErrInvalidHeader, "%s appears twice (first at byte %d)", metadataKey, first)
			}
			return nil, newError(file, key, keyAt, ErrDuplicateName, "name appears twice in the header (first at byte %d)", first)
		}
		seen[key] = keyAt
		if key == metadataKey {
			if h.metadata, err = p.metadata(); err != nil {
				return nil, err
			}
			continue
		}
		e, err := p.entry(key, keyAt)
		if err != nil {
			return nil, err
		}
		h.entries = append(h.entries, e)
	}
	if err := p.expectDelim('}', ""); err != nil {
		return nil, err
	}
	// Only whitespace (the writer's padding) may follow the object.
	if tok, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, p.jsonError("", err)
		}
		return nil, newError(file, "", p.offset(), ErrInvalidHeader, "unexpected %v after the header object", tok)
	}
	return h, nil
}

// offset returns the file offset of the next token.
func (p *headerParser) offset() int64 { return p.base + nextToken(p.b, p.dec.InputOffset()) }

// nextToken skips from i past the separators json.Decoder leaves unread
// after a token (whitespace, ':' and ','), so error offsets point at the
// offending value itself.
func nextToken(b []byte, i int64) int64 {
	for i < int64(len(b)) {
		switch b[i] {
		case ' ', '\t', '\n', '\r', ':', ',':
			i++
			continue
		}
		break
	}
	return i
}

// syntaxOffset converts a json.SyntaxError's offset, which counts the bad
// byte as read, into the offset of that byte.
func syntaxOffset(syn *json.SyntaxError) int64 {
	if syn.Offset > 0 {
		return syn.Offset - 1
	}
	return 0
}

func (p *headerParser) jsonError(tensor string, err error) error {
	off := p.offset()
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		off = p.base + syntaxOffset(syn)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return newError(p.file, tensor, off, ErrInvalidHeader, "%v", err)
}

func (p *headerParser) token(tensor string) (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.jsonError(tensor, err)
	}
	return tok, nil
}

func (p *headerParser) expectDelim(d json.Delim, tensor string) error {
	at := p.offset()
	tok, err := p.token(tensor)
	if err != nil {
		return err
	}
	if tok != d {
		return newError(p.file, tensor, at, ErrInvalidHeader, "expected %q, found %s", string(d), describe(tok))
	}
	return nil
}

// describe names a JSON token for an error message.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return strconv.Quote(string(t))
	case string:
		return "string " + strconv.Quote(t)
	case json.Number:
		return "number " + string(t)
	case bool:
		return "boolean " + strconv.FormatBool(t)
	case nil:
		return "null"
	}
	return "unexpected token"
}

// metadata reads the __metadata__ value: null or an object of strings.
func (p *headerParser) metadata() (map[string]string, error) {
	at := p.offset()
	tok, err := p.token("")
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('{') {
		return nil, newError(p.file, "", at, ErrInvalidHeader, "%s must be an object of strings, found %s", metadataKey, describe(tok))
	}
	m := make(map[string]string)
	for p.dec.More() {
		keyAt := p.offset()
		tok, err := p.token("")
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if _, dup := m[key]; dup {
			return nil, newError(p.file, "", keyAt, ErrInvalidHeader, "metadata key %q appears twice", key)
		}
		valAt := p.offset()
		tok, err = p.token("")
		if err != nil {
			return nil, err
		}
		val, ok := tok.(string)
		if !ok {
			return nil, newError(p.file, "", valAt, ErrInvalidHeader, "metadata value of %q must be a string, found %s", key, describe(tok))
		}
		m[key] = val
	}
	return m, p.expectDelim('}', "")
}

// entry reads one tensor's {"dtype", "shape", "data_offsets"} object.
func (p *headerParser) entry(name string, at int64) (headerEntry, error) {
	e := headerEntry{name: name, at: at}
	if err := p.expectDelim('{', name); err != nil {
		return e, err
	}
	var haveDType, haveShape, haveOffsets bool
	for p.dec.More() {
		keyAt := p.offset()
		tok, err := p.token(name)
		if err != nil {
			return e, err
		}
		field := tok.(string)
		var dup bool
		switch field {
		case "dtype":
			dup, haveDType = haveDType, true
			valAt := p.offset()
			tok, err := p.token(name)
			if err != nil {
				return e, err
			}
			s, ok := tok.(string)
			if !ok {
				return e, newError(p.file, name, valAt, ErrInvalidHeader, "dtype must be a string, found %s", describe(tok))
			}
			e.dtype = s
		case "shape":
			dup, haveShape = haveShape, true
			if e.shape, err = p.intArray(name, field, MaxRank); err != nil {
				return e, err
			}
			if e.shape == nil {
				e.shape = []int64{} // a scalar; keep it distinct from "absent"
			}
		case "data_offsets":
			dup, haveOffsets = haveOffsets, true
			valAt := p.offset()
			offs, err := p.intArray(name, field, 2)
			if err != nil {
				return e, err
			}
			if len(offs) != 2 {
				return e, newError(p.file, name, valAt, ErrInvalidHeader, "data_offsets must hold 2 numbers, found %d", len(offs))
			}
			e.begin, e.end = offs[0], offs[1]
		default:
			// The reference ignores unknown fields; so do we.
			var skip json.RawMessage
			if err := p.dec.Decode(&skip); err != nil {
				return e, p.jsonError(name, err)
			}
		}
		if dup {
			return e, newError(p.file, name, keyAt, ErrInvalidHeader, "field %q appears twice", field)
		}
	}
	if err := p.expectDelim('}', name); err != nil {
		return e, err
	}
	switch {
	case !haveDType:
		return e, newError(p.file, name, at, ErrInvalidHeader, "missing dtype")
	case !haveShape:
		return e, newError(p.file, name, at, ErrInvalidHeader, "missing shape")
	case !haveOffsets:
		return e, newError(p.file, name, at, ErrInvalidHeader, "missing data_offsets")
	}
	return e, nil
}

// intArray reads a JSON array of at most max non-negative integers.
func (p *headerParser) intArray(name, field string, max int) ([]int64, error) {
	at := p.offset()
	tok, err := p.token(name)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, newError(p.file, name, at, ErrInvalidHeader, "%s must be an array, found %s", field, describe(tok))
	}
	var out []int64
	for p.dec.More() {
		if len(out) == max {
			if field == "shape" {
				return nil, newError(p.file, name, p.offset(), ErrBadShape, "shape has more than %d dimensions", max)
			}
			return nil, newError(p.file, name, p.offset(), ErrInvalidHeader, "%s has more than %d elements", field, max)
		}
		valAt := p.offset()
		tok, err := p.token(name)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, newError(p.file, name, valAt, ErrInvalidHeader, "%s must hold integers, found %s", field, describe(tok))
		}
		// ParseInt rejects fractions, exponents and values beyond int64,
		// which no real offset or dimension needs.
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || v < 0 {
			return nil, newError(p.file, name, valAt, ErrInvalidHeader, "%s element %s is not a non-negative 64-bit integer", field, num)
		}
		out = append(out, v)
	}
	return out, p.expectDelim(']', name)
}
