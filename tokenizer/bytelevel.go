package tokenizer

// byteToRune is GPT-2's bytes_to_unicode table: printable Latin-1 bytes map
// to themselves, the others (control characters, space, 0x7F-0xA0, 0xAD) to
// U+0100 onwards, so every byte is a visible character ("Ġ" is the space).
var byteToRune [256]rune

// runeToByte inverts byteToRune.
var runeToByte map[rune]byte

func init() {
	runeToByte = make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = next
			next++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// appendByteLevel appends s written in the byte-level alphabet.
func appendByteLevel(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		r := byteToRune[s[i]]
		if r < 0x80 {
			dst = append(dst, byte(r))
		} else {
			dst = append(dst, string(r)...)
		}
	}
	return dst
}

// appendFromByteLevel appends the bytes a byte-level piece stands for. As in
// Hugging Face's ByteLevel decoder, a piece holding a character outside the
// alphabet (an added token such as "<|im_start|> ") is taken as plain text.
func appendFromByteLevel(dst []byte, piece string) []byte {
	start := len(dst)
	for _, r := range piece {
		b, ok := runeToByte[r]
		if !ok {
			return append(dst[:start], piece...)
		}
		dst = append(dst, b)
	}
	return dst
}
