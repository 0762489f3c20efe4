package tokenizer_test

import (
	"fmt"

	"github.com/kvant-dev/kvant/tokenizer"
)

// A SentencePiece BPE tokenizer with a vocabulary small enough to read:
// pieces merge by score, and characters without a piece fall back to bytes.
func Example() {
	spec := &tokenizer.Spec{
		Model: tokenizer.ModelSentencePieceBPE,
		Pieces: []string{"<unk>", "<s>", "</s>", "<0xC3>", "<0xA9>",
			"▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁hello"},
		Scores: []float32{0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10},
		Types: []tokenizer.TokenType{tokenizer.TypeUnknown, tokenizer.TypeControl, tokenizer.TypeControl,
			tokenizer.TypeByte, tokenizer.TypeByte, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		UNK: 0, BOS: 1, EOS: 2, PAD: -1,
		AddBOS: true, ByteFallback: true,
		AddDummyPrefix: true, EscapeWhitespaces: true,
	}
	tok, err := tokenizer.New(spec)
	if err != nil {
		fmt.Println(err)
		return
	}
	ids := tok.Encode("hello hé", true)
	fmt.Println(ids)
	var pieces []string
	for _, id := range ids {
		pieces = append(pieces, tok.TokenPiece(id))
	}
	fmt.Printf("%q\n", pieces)
	fmt.Printf("%q\n", tok.Decode(ids))

	// Streaming: the two byte tokens of "é" are held back until complete.
	d := tokenizer.NewStreamDecoder(tok)
	var parts []string
	for _, id := range ids {
		parts = append(parts, d.Write(id))
	}
	fmt.Printf("%q\n", parts)
	// Output:
	// [1 14 10 3 4]
	// ["<s>" "▁hello" "▁h" "<0xC3>" "<0xA9>"]
	// "hello hé"
	// ["" "hello" " h" "" "é"]
}
