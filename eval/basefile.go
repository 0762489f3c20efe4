package eval

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/kvant-dev/kvant/model"
)

// A base file stores what Compare needs from the base model, so a model
// too large to run twice is run once (kvant-infer compare --save-base) and
// every candidate is compared against the file (--base-logits). Layout, all
// little-endian (docs/validation.md has the full description):
//
//	8 bytes   magic "KVNTBASE"
//	4 bytes   uint32 H, the header length
//	H bytes   header, JSON (BaseHeader)
//	W·C int32 the token ids of the W windows of C tokens, as in the text
//	          (before the first is replaced by BOS)
//	W·S rows  one per scored position (S = C−1−C/2 per window), in order:
//	          "f32": V float32 logits, exactly as the base computed them
//	          "u16": float32 lo, float32 step, float64 lse (log Σ exp of
//	                 the row's logits), V uint16 codes q: the logit is
//	                 lo + step·(q−1) for q ≥ 1; q = 0 marks a logit more
//	                 than 16 below the row's maximum (p < 1.1e-7·p_max)
const baseMagic = "KVNTBASE"

// Base file row encodings.
const (
	EncodingF32 = "f32"
	EncodingU16 = "u16"
)

// u16Range is how far below the row maximum the u16 encoding resolves
// logits: llama-perplexity's --kl-divergence-base uses the same 16.
const u16Range = 16

// Prompt is one greedy-continuation prompt and the base's continuation.
type Prompt struct {
	Window int   `json:"window"`
	IDs    []int `json:"ids"`
	Greedy []int `json:"greedy"`
}

// BaseHeader is a base file's JSON header.
type BaseHeader struct {
	Format     string        `json:"format"` // "kvant-base"
	Version    int           `json:"version"`
	BaseModel  string        `json:"base_model"`
	BaseConfig *model.Config `json:"base_config,omitempty"`
	// TextSHA256 and TextBytes identify the evaluated text.
	TextSHA256 string `json:"text_sha256"`
	TextBytes  int    `json:"text_bytes"`
	TextTokens int    `json:"text_tokens"`
	Context    int    `json:"context"`
	Windows    int    `json:"windows"`
	// FirstScored = Context/2 and ScoredPerWindow = Context−1−Context/2.
	FirstScored     int      `json:"first_scored"`
	ScoredPerWindow int      `json:"scored_per_window"`
	Vocab           int      `json:"vocab"`
	Encoding        string   `json:"encoding"`
	BOS             int      `json:"bos"`
	Prompts         []Prompt `json:"prompts"`
}

func (h *BaseHeader) rowBytes() int64 {
	if h.Encoding == EncodingU16 {
		return 16 + 2*int64(h.Vocab)
	}
	return 4 * int64(h.Vocab)
}

// BaseWriter writes a base file. The file appears under its name only when
// complete: it is written to a temporary file renamed at the end.
type BaseWriter struct {
	path, encoding string
	f              *os.File
	w              *bufio.Writer
	buf            []byte
	rows, want     int64
}

// NewBaseWriter prepares to write a base file with the given row encoding
// ("f32" or "u16"). Nothing is created until Compare starts.
func NewBaseWriter(path, encoding string) (*BaseWriter, error) {
	if encoding != EncodingF32 && encoding != EncodingU16 {
		return nil, fmt.Errorf("%w: base encoding %q (want f32 or u16)", ErrBadOptions, encoding)
	}
	return &BaseWriter{path: path, encoding: encoding}, nil
}

func (bw *BaseWriter) begin(in CompareInput, base *model.Model, tokens []int, ws []Window, ctxLen, vocab, bos int, prompts []Prompt) error {
	sum := sha256.Sum256(in.Text)
	h := BaseHeader{Format: "kvant-base", Version: 1, BaseModel: in.BaseName, TextSHA256: hex.EncodeToString(sum[:]),
		TextBytes: len(in.Text), TextTokens: len(tokens), Context: ctxLen, Windows: len(ws), FirstScored: ctxLen / 2,
		ScoredPerWindow: ctxLen - 1 - ctxLen/2, Vocab: vocab, Encoding: bw.encoding, BOS: bos, Prompts: prompts}
	if base != nil {
		cfg := base.Config
		h.BaseConfig = &cfg
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(bw.path), filepath.Base(bw.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save base: %w", err)
	}
	bw.f, bw.w = f, bufio.NewWriterSize(f, 1<<20)
	bw.want = int64(len(ws)) * int64(h.ScoredPerWindow)
	bw.w.WriteString(baseMagic)
	binary.Write(bw.w, binary.LittleEndian, uint32(len(hj)))
	bw.w.Write(hj)
	for _, w := range ws {
		for _, t := range tokens[w.Start : w.Start+w.Len] {
			binary.Write(bw.w, binary.LittleEndian, int32(t))
		}
	}
	return nil
}

func (bw *BaseWriter) row(logits []float32) error {
	if bw == nil {
		return nil
	}
	b := bw.buf[:0]
	switch bw.encoding {
	case EncodingF32:
		for _, v := range logits {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case EncodingU16:
		b = appendU16Row(b, logits)
	}
	bw.buf = b
	bw.rows++
	if _, err := bw.w.Write(b); err != nil {
		return fmt.Errorf("save base %s: %w", bw.path, err)
	}
	return nil
}

// appendU16Row quantizes a row of logits to 16-bit codes over the 16 nats
// below its maximum: step (hi−lo)/65534, code 1 + round((l−lo)/step), and
// code 0 for logits below lo. The worst logit error is step/2 ≤ 1.3e-4.
// The row's exact log-sum-exp is kept, so the log-probabilities of the
// resolved entries are not renormalized over what the codes keep (which
// would bias KL(base‖model) by about the dropped mass).
func appendU16Row(b []byte, logits []float32) []byte {
	hi, lo := logits[0], logits[0]
	for _, v := range logits {
		hi, lo = max(hi, v), min(lo, v)
	}
	lo = max(lo, hi-u16Range)
	step := (hi - lo) / 65534
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(lo))
	b = binary.LittleEndian.AppendUint32(b, math.Float32bits(step))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(logSumExp(logits)))
	for _, v := range logits {
		var q uint16
		switch {
		case v < lo:
		case step == 0:
			q = 1
		default:
			q = uint16(1 + min(65534, math.Round(float64((v-lo)/step))))
		}
		b = binary.LittleEndian.AppendUint16(b, q)
	}
	return b
}

// decodeU16Row is appendU16Row's inverse: unresolved logits become −Inf.
// It returns the row's log-sum-exp and its floor, the log-probability of
// the lowest resolved logit.
func decodeU16Row(dst []float32, src []byte) rowMeta {
	lo := math.Float32frombits(binary.LittleEndian.Uint32(src))
	step := math.Float32frombits(binary.LittleEndian.Uint32(src[4:]))
	lse := math.Float64frombits(binary.LittleEndian.Uint64(src[8:]))
	src = src[16:]
	for i := range dst {
		q := binary.LittleEndian.Uint16(src[2*i:])
		if q == 0 {
			dst[i] = float32(math.Inf(-1))
		} else {
			dst[i] = lo + step*float32(q-1)
		}
	}
	return rowMeta{lse: lse, floor: float64(lo) - lse}
}

func (bw *BaseWriter) finish() error {
	if bw == nil {
		return nil
	}
	err := bw.w.Flush()
	if err == nil && bw.rows != bw.want {
		err = fmt.Errorf("wrote %d rows, expected %d", bw.rows, bw.want)
	}
	if err == nil {
		err = bw.f.Sync()
	}
	if cerr := bw.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(bw.f.Name(), bw.path)
	}
	if err != nil {
		os.Remove(bw.f.Name())
		return fmt.Errorf("save base %s: %w", bw.path, err)
	}
	return nil
}

// Abort removes the partial file of a Compare that failed.
func (bw *BaseWriter) Abort() {
	if bw != nil && bw.f != nil {
		bw.f.Close()
		os.Remove(bw.f.Name())
	}
}

// BaseReader reads a base file written by a BaseWriter.
type BaseReader struct {
	path    string
	f       *os.File
	hdr     BaseHeader
	tokOff  int64 // offset of the window tokens
	rowsOff int64 // offset of the first row
	buf     []byte
}

// OpenBase opens a base file and checks its structure.
func OpenBase(path string) (*BaseReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := &BaseReader{path: path, f: f}
	if err := br.readHeader(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return br, nil
}

func (br *BaseReader) readHeader() error {
	var pre [12]byte
	if _, err := io.ReadFull(br.f, pre[:]); err != nil || string(pre[:8]) != baseMagic {
		return fmt.Errorf("%w: no %q magic", ErrBaseFormat, baseMagic)
	}
	hl := int64(binary.LittleEndian.Uint32(pre[8:]))
	st, err := br.f.Stat()
	if err != nil {
		return err
	}
	if 12+hl > st.Size() {
		return fmt.Errorf("%w: header of %d bytes past the end of the file", ErrBaseFormat, hl)
	}
	hj := make([]byte, hl)
	if _, err := io.ReadFull(br.f, hj); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(hj))
	if err := dec.Decode(&br.hdr); err != nil {
		return fmt.Errorf("%w: header: %v", ErrBaseFormat, err)
	}
	h := &br.hdr
	switch {
	case h.Format != "kvant-base":
		return fmt.Errorf("%w: format %q", ErrBaseFormat, h.Format)
	case h.Version != 1:
		return fmt.Errorf("%w: version %d (this kvant reads 1)", ErrBaseFormat, h.Version)
	case h.Encoding != EncodingF32 && h.Encoding != EncodingU16:
		return fmt.Errorf("%w: encoding %q", ErrBaseFormat, h.Encoding)
	case h.Context < 2 || h.Windows < 1 || h.Vocab < 1 || h.FirstScored != h.Context/2 || h.ScoredPerWindow != h.Context-1-h.Context/2:
		return fmt.Errorf("%w: inconsistent header (context %d, windows %d, vocab %d)", ErrBaseFormat, h.Context, h.Windows, h.Vocab)
	}
	br.tokOff = 12 + hl
	br.rowsOff = br.tokOff + 4*int64(h.Windows)*int64(h.Context)
	want := br.rowsOff + int64(h.Windows)*int64(h.ScoredPerWindow)*h.rowBytes()
	if st.Size() != want {
		return fmt.Errorf("%w: %d bytes, the header implies %d (truncated?)", ErrBaseFormat, st.Size(), want)
	}
	return nil
}

// Header returns the file's header.
func (br *BaseReader) Header() BaseHeader { return br.hdr }

// Close closes the file.
func (br *BaseReader) Close() error { return br.f.Close() }

// check verifies that the file belongs to this text, context and
// vocabulary, and returns the windows to compare: those of the file, or
// fewer when ws (limited by --max-windows) has fewer.
func (br *BaseReader) check(text []byte, tokens []int, ws []Window, ctxLen, vocab int) ([]Window, error) {
	h := &br.hdr
	mismatch := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", br.path, ErrBaseMismatch, fmt.Sprintf(format, a...))
	}
	if h.Context != ctxLen {
		return nil, mismatch("saved with context %d, this run uses %d", h.Context, ctxLen)
	}
	if h.Vocab != vocab {
		return nil, mismatch("base vocabulary %d, model vocabulary %d", h.Vocab, vocab)
	}
	if text != nil {
		sum := sha256.Sum256(text)
		if hex.EncodeToString(sum[:]) != h.TextSHA256 {
			return nil, mismatch("saved for a different text (sha256 %s…, this text %s…)", h.TextSHA256[:12], hex.EncodeToString(sum[:6]))
		}
	}
	n := min(len(ws), h.Windows)
	raw := make([]byte, 4*int64(n)*int64(h.Context))
	if _, err := br.f.ReadAt(raw, br.tokOff); err != nil {
		return nil, fmt.Errorf("%s: %w", br.path, err)
	}
	for i, w := range ws[:n] {
		for j := 0; j < w.Len; j++ {
			got := int(int32(binary.LittleEndian.Uint32(raw[4*(i*h.Context+j):])))
			if got != tokens[w.Start+j] {
				return nil, mismatch("window %d token %d is %d in the file, %d here: the model's tokenizer differs from the base's", i, j, got, tokens[w.Start+j])
			}
		}
	}
	return ws[:n], nil
}

// window appends window i's rows (logits, −Inf where unresolved) and
// their descriptions.
func (br *BaseReader) window(i int, rows []float32, metas []rowMeta) ([]float32, []rowMeta, error) {
	h := &br.hdr
	rb := h.rowBytes()
	S := int64(h.ScoredPerWindow)
	if cap(br.buf) < int(S*rb) {
		br.buf = make([]byte, S*rb)
	}
	buf := br.buf[:S*rb]
	if _, err := br.f.ReadAt(buf, br.rowsOff+int64(i)*S*rb); err != nil {
		return nil, nil, fmt.Errorf("%s: window %d: %w", br.path, i, err)
	}
	V := h.Vocab
	for r := int64(0); r < S; r++ {
		src := buf[r*rb : (r+1)*rb]
		n := len(rows)
		rows = slices.Grow(rows, V)[:n+V]
		dst := rows[n:]
		if h.Encoding == EncodingU16 {
			metas = append(metas, decodeU16Row(dst, src))
			continue
		}
		for j := range dst {
			dst[j] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*j:]))
		}
		metas = append(metas, exactRow)
	}
	return rows, metas, nil
}
