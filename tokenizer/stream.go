package tokenizer

import (
	"unicode/utf8"
)

// StreamDecoder decodes tokens one at a time, for printing generated text
// as it comes. Byte-fallback and byte-level tokens can split one character
// over several tokens; the decoder holds such bytes back until the
// character is complete, so every string it returns is valid UTF-8 and the
// concatenation of its outputs equals Decode of all ids (up to how
// malformed byte sequences are replaced).
type StreamDecoder struct {
	tok     Tokenizer
	pd      pieceDecoder // nil for Tokenizers not made by New
	state   decodeState
	pending []byte
}

// NewStreamDecoder returns a StreamDecoder for tok. Tokenizers made by New
// are decoded exactly; others fall back to Decode of single tokens.
func NewStreamDecoder(tok Tokenizer) *StreamDecoder {
	pd, _ := tok.(pieceDecoder)
	return &StreamDecoder{tok: tok, pd: pd}
}

// Write adds one token and returns the text it completes, possibly "".
func (d *StreamDecoder) Write(id int) string {
	if d.pd == nil {
		return d.tok.Decode([]int{id})
	}
	d.pending = d.pd.appendDecoded(d.pending, id, &d.state)
	// Emit everything up to the last character that might still be
	// completed by later bytes.
	n := len(d.pending)
	for i := len(d.pending) - 1; i >= 0 && i >= len(d.pending)-utf8.UTFMax; i-- {
		if utf8.RuneStart(d.pending[i]) {
			if !utf8.FullRune(d.pending[i:]) {
				n = i
			}
			break
		}
	}
	out := validUTF8PerByte(d.pending[:n])
	d.pending = append(d.pending[:0], d.pending[n:]...)
	return out
}

// Flush returns the held-back bytes of an unfinished character, each as
// U+FFFD, and resets the decoder for a new text.
func (d *StreamDecoder) Flush() string {
	out := validUTF8PerByte(d.pending)
	d.pending = d.pending[:0]
	d.state = decodeState{}
	return out
}
