package pytorch

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxPickleBytes bounds one pickle stream. A checkpoint's pickle holds only
// the object graph (tensor data lives elsewhere), so even large models stay
// far below this; the bound keeps a hostile header from exhausting memory.
const maxPickleBytes = 512 << 20

// scannedPickle is one pickle stream, read up to and including its STOP
// opcode, whose globals have all been checked against the allowlist.
type scannedPickle struct {
	data []byte
}

// scanPickle reads one pickle from r, which has at most limit bytes left,
// walking its opcodes the way pickletools.genops does. It executes nothing.
// It exists for three reasons gopickle cannot cover by itself:
//   - every length argument is checked against the bytes left, so the
//     unpickler never allocates a buffer a header merely claims;
//   - every global (GLOBAL, INST and STACK_GLOBAL) is checked against the
//     allowlist before any object is built, including the few that gopickle
//     would resolve without consulting FindClass;
//   - it finds where the pickle ends, which the legacy format needs because
//     several pickles and the raw storages follow each other in one stream.
//
// Errors are relative to the pickle's first byte; the caller adds the file
// name and the pickle's position in it.
func scanPickle(r *bufio.Reader, limit int64) (scannedPickle, error) {
	if limit > maxPickleBytes {
		limit = maxPickleBytes
	}
	s := scanner{r: r, limit: limit, memoStrings: map[int64]string{}, memoUsed: map[int64]bool{}}
	for {
		done, err := s.step()
		if err != nil {
			return scannedPickle{}, err
		}
		if done {
			return scannedPickle{data: s.buf.Bytes()}, nil
		}
	}
}

type scanner struct {
	r     *bufio.Reader
	limit int64 // bytes the pickle may still occupy
	buf   bytes.Buffer

	// A shadow of the string literals most recently pushed, just enough to
	// know the module and name a STACK_GLOBAL will pop. Python's pickler
	// writes them as two string pushes (or memo fetches of earlier ones)
	// right before the opcode; anything else resets the shadow, and a
	// STACK_GLOBAL whose operands are not known literals is refused.
	recent      []*string
	memoStrings map[int64]string
	memoUsed    map[int64]bool
}

// errShort marks a pickle that ends before its STOP opcode.
var errShort = errors.New("pickle ends before its STOP opcode")

func (s *scanner) pos() int64 { return int64(s.buf.Len()) }

func (s *scanner) read(n int64) ([]byte, error) {
	if n < 0 || n > s.limit {
		return nil, fmt.Errorf("%w: at pickle byte %d an argument of %d bytes runs past the %d bytes left", errShort, s.pos(), n, s.limit)
	}
	start := s.buf.Len()
	var got int64
	if n <= 1<<20 {
		// The common case: read straight into the buffer's spare room.
		s.buf.Grow(int(n))
		room := s.buf.AvailableBuffer()[:n]
		m, err := io.ReadFull(s.r, room)
		s.buf.Write(room[:m])
		got = int64(m)
		s.limit -= got
		if err != nil {
			return nil, fmt.Errorf("%w: at pickle byte %d: %v", errShort, int64(start)+got, err)
		}
		return s.buf.Bytes()[start:], nil
	}
	// A large argument is copied in pieces, so a length that lies costs
	// only as much memory as there really is data.
	got, err := io.CopyN(&s.buf, s.r, n)
	s.limit -= got
	if err != nil {
		return nil, fmt.Errorf("%w: at pickle byte %d: %v", errShort, int64(start)+got, err)
	}
	return s.buf.Bytes()[start:], nil
}

// line reads a newline-terminated argument and returns it without the newline.
func (s *scanner) line() ([]byte, error) {
	start := s.buf.Len()
	for {
		b, err := s.read(1)
		if err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return s.buf.Bytes()[start : s.buf.Len()-1], nil
		}
	}
}

func (s *scanner) pushString(v string) {
	s.recent = append(s.recent, &v)
	if len(s.recent) > 2 {
		s.recent = s.recent[1:]
	}
}

func (s *scanner) pushUnknown() { s.recent = append(s.recent[:0], nil) }

func (s *scanner) remember(index int64) {
	s.memoUsed[index] = true
	if n := len(s.recent); n > 0 && s.recent[n-1] != nil {
		s.memoStrings[index] = *s.recent[n-1]
	} else {
		delete(s.memoStrings, index)
	}
}

func (s *scanner) recall(index int64) {
	if v, ok := s.memoStrings[index]; ok {
		s.pushString(v)
	} else {
		s.pushUnknown()
	}
}

func (s *scanner) checkGlobal(module, name string, at int64) error {
	if _, ok := allowedGlobals[module+"."+name]; !ok {
		return fmt.Errorf("%w: %s.%s at pickle byte %d", ErrDisallowedGlobal, module, name, at)
	}
	return nil
}

// step reads one opcode and its argument; done is true after STOP.
func (s *scanner) step() (done bool, err error) {
	at := s.pos()
	op, err := s.read(1)
	if err != nil {
		return false, err
	}
	code := op[0]
	switch code {
	case '.': // STOP
		return true, nil

	// Opcodes without an argument that leave the string shadow meaningless.
	case '(', '0', '1', '2', 'N', 'R', 'a', 'b', 'd', '}', 'e', 'l', ']', 'o', 's', 't', ')', 'u', 'Q',
		0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x90, 0x91, 0x92, 0x97, 0x98:
		s.pushUnknown()

	case 0x94: // MEMOIZE: gopickle stores at len(memo)
		s.remember(int64(len(s.memoUsed)))

	case 0x93: // STACK_GLOBAL
		if len(s.recent) < 2 || s.recent[0] == nil || s.recent[1] == nil {
			return false, fmt.Errorf("%w: STACK_GLOBAL at pickle byte %d takes a module and name computed at run time", ErrDisallowedGlobal, at)
		}
		if err := s.checkGlobal(*s.recent[0], *s.recent[1], at); err != nil {
			return false, err
		}
		s.pushUnknown()

	case 'c', 'i': // GLOBAL, INST: module and name on two lines
		module, err := s.line()
		if err != nil {
			return false, err
		}
		m := string(module)
		name, err := s.line()
		if err != nil {
			return false, err
		}
		if err := s.checkGlobal(m, string(name), at); err != nil {
			return false, err
		}
		s.pushUnknown()

	case 'S', 'V': // STRING, UNICODE: a string on one line
		l, err := s.line()
		if err != nil {
			return false, err
		}
		if code == 'S' && len(l) >= 2 {
			l = l[1 : len(l)-1] // strip the quotes, as gopickle does
		}
		s.pushString(string(l))

	case 'F', 'I', 'L', 'P': // FLOAT, INT, LONG, PERSID
		if _, err := s.line(); err != nil {
			return false, err
		}
		s.pushUnknown()

	case 'g', 'p': // GET, PUT with a decimal index
		l, err := s.line()
		if err != nil {
			return false, err
		}
		var index int64
		if _, err := fmt.Sscanf(string(l), "%d", &index); err != nil {
			return false, fmt.Errorf("%w: bad memo index %q at pickle byte %d", ErrCorruptPickle, l, at)
		}
		if code == 'g' {
			s.recall(index)
		} else {
			s.remember(index)
		}

	case 'h', 'q': // BINGET, BINPUT
		b, err := s.read(1)
		if err != nil {
			return false, err
		}
		if code == 'h' {
			s.recall(int64(b[0]))
		} else {
			s.remember(int64(b[0]))
		}

	case 'j', 'r': // LONG_BINGET, LONG_BINPUT
		b, err := s.read(4)
		if err != nil {
			return false, err
		}
		index := int64(binary.LittleEndian.Uint32(b))
		if code == 'j' {
			s.recall(index)
		} else {
			s.remember(index)
		}

	case 'K', 0x80, 0x82: // BININT1, PROTO, EXT1
		if _, err := s.read(1); err != nil {
			return false, err
		}
		s.pushUnknown()
	case 'M', 0x83: // BININT2, EXT2
		if _, err := s.read(2); err != nil {
			return false, err
		}
		s.pushUnknown()
	case 'J', 0x84: // BININT, EXT4
		if _, err := s.read(4); err != nil {
			return false, err
		}
		s.pushUnknown()
	case 'G': // BINFLOAT
		if _, err := s.read(8); err != nil {
			return false, err
		}
		s.pushUnknown()

	case 'U', 'C', 0x8c, 0x8a: // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE, LONG1
		n, err := s.read(1)
		if err != nil {
			return false, err
		}
		data, err := s.read(int64(n[0]))
		if err != nil {
			return false, err
		}
		s.pushLiteral(code, data)

	case 'T', 'B', 'X', 0x8b: // BINSTRING, BINBYTES, BINUNICODE, LONG4
		n, err := s.read(4)
		if err != nil {
			return false, err
		}
		size := int64(binary.LittleEndian.Uint32(n))
		if code == 'T' || code == 0x8b {
			size = int64(int32(binary.LittleEndian.Uint32(n)))
		}
		data, err := s.read(size)
		if err != nil {
			return false, err
		}
		s.pushLiteral(code, data)

	case 0x8d, 0x8e, 0x96: // BINUNICODE8, BINBYTES8, BYTEARRAY8
		n, err := s.read(8)
		if err != nil {
			return false, err
		}
		size := binary.LittleEndian.Uint64(n)
		if size > uint64(s.limit) {
			return false, fmt.Errorf("%w: at pickle byte %d an argument of %d bytes runs past the %d bytes left", errShort, s.pos(), size, s.limit)
		}
		data, err := s.read(int64(size))
		if err != nil {
			return false, err
		}
		s.pushLiteral(code, data)

	case 0x95: // FRAME: only a length; the framed opcodes follow inline
		n, err := s.read(8)
		if err != nil {
			return false, err
		}
		if size := binary.LittleEndian.Uint64(n); size > uint64(s.limit) {
			return false, fmt.Errorf("%w: frame of %d bytes at pickle byte %d runs past the %d bytes left", errShort, size, at, s.limit)
		}

	default:
		return false, fmt.Errorf("%w: unknown opcode 0x%02x at pickle byte %d", ErrCorruptPickle, code, at)
	}
	return false, nil
}

func (s *scanner) pushLiteral(code byte, data []byte) {
	switch code {
	case 'U', 0x8c, 'T', 'X', 0x8d:
		s.pushString(string(data))
	default:
		s.pushUnknown()
	}
}
