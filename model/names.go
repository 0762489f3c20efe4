package model

import (
	"fmt"
	"regexp"
	"strconv"
)

// Canonical tensor names, used inside every .kvant file. They follow
// llama.cpp's GGUF names so an export to GGUF is a rename-free copy. Shapes
// are row-major [out, in], as PyTorch stores linear weights.
//
// The q and k projections (weights and biases) are stored with RoPE's
// interleaved pairing: rotation pairs are adjacent rows (2i, 2i+1) within a
// head, as in Meta's original Llama and llama2.c. Hugging Face checkpoints use
// the rotate-half pairing (i, i+head_dim/2); converters permute their rows
// with PermuteRotateHalfToInterleaved.
const (
	TokenEmbedding = "token_embd.weight"
	OutputNorm     = "output_norm.weight"
	Output         = "output.weight"
	// RopeFreqs, optional, holds one divisor per rotation pair of a head:
	// llama.cpp's way of storing Llama-3.1 rope scaling in GGUF files.
	RopeFreqs = "rope_freqs.weight"
)

// Per-layer tensor suffixes, after "blk.N.".
const (
	AttnNorm   = "attn_norm.weight"
	AttnQ      = "attn_q.weight"
	AttnK      = "attn_k.weight"
	AttnV      = "attn_v.weight"
	AttnQBias  = "attn_q.bias"
	AttnKBias  = "attn_k.bias"
	AttnVBias  = "attn_v.bias"
	AttnOutput = "attn_output.weight"
	FFNNorm    = "ffn_norm.weight"
	FFNGate    = "ffn_gate.weight"
	FFNUp      = "ffn_up.weight"
	FFNDown    = "ffn_down.weight"
)

// LayerTensor returns the canonical name of a per-layer tensor.
func LayerTensor(layer int, suffix string) string {
	return "blk." + strconv.Itoa(layer) + "." + suffix
}

// NameStyle tells how a source checkpoint names its tensors.
type NameStyle int

const (
	// StyleHF is Hugging Face transformers (model.layers.N.self_attn.q_proj.weight).
	StyleHF NameStyle = iota
	// StyleMeta is Meta's original Llama and llama2.c (layers.N.attention.wq.weight).
	StyleMeta
)

var (
	hfLayer     = regexp.MustCompile(`^model\.layers\.(\d+)\.(.+)$`)
	metaLayer   = regexp.MustCompile(`^layers\.(\d+)\.(.+)$`)
	ropeRotated = regexp.MustCompile(`^blk\.\d+\.attn_[qk]\.(weight|bias)$`)
)

var hfGlobal = map[string]string{
	"model.embed_tokens.weight": TokenEmbedding,
	"model.norm.weight":         OutputNorm,
	"lm_head.weight":            Output,
}

var hfLayerSuffix = map[string]string{
	"input_layernorm.weight":          AttnNorm,
	"self_attn.q_proj.weight":         AttnQ,
	"self_attn.k_proj.weight":         AttnK,
	"self_attn.v_proj.weight":         AttnV,
	"self_attn.q_proj.bias":           AttnQBias,
	"self_attn.k_proj.bias":           AttnKBias,
	"self_attn.v_proj.bias":           AttnVBias,
	"self_attn.o_proj.weight":         AttnOutput,
	"post_attention_layernorm.weight": FFNNorm,
	"mlp.gate_proj.weight":            FFNGate,
	"mlp.up_proj.weight":              FFNUp,
	"mlp.down_proj.weight":            FFNDown,
}

var metaGlobal = map[string]string{
	"tok_embeddings.weight": TokenEmbedding,
	"norm.weight":           OutputNorm,
	"output.weight":         Output,
}

var metaLayerSuffix = map[string]string{
	"attention_norm.weight":  AttnNorm,
	"attention.wq.weight":    AttnQ,
	"attention.wk.weight":    AttnK,
	"attention.wv.weight":    AttnV,
	"attention.wo.weight":    AttnOutput,
	"ffn_norm.weight":        FFNNorm,
	"feed_forward.w1.weight": FFNGate,
	"feed_forward.w3.weight": FFNUp,
	"feed_forward.w2.weight": FFNDown,
}

// CanonicalName maps a source tensor name to kvant's canonical name. ok is
// false for tensors the model does not use (rotary caches, optimizer state),
// which converters skip.
func CanonicalName(style NameStyle, name string) (canonical string, ok bool) {
	global, layerRe, suffixes := hfGlobal, hfLayer, hfLayerSuffix
	if style == StyleMeta {
		global, layerRe, suffixes = metaGlobal, metaLayer, metaLayerSuffix
	}
	if c, ok := global[name]; ok {
		return c, true
	}
	m := layerRe.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	suffix, ok := suffixes[m[2]]
	if !ok {
		return "", false
	}
	layer, err := strconv.Atoi(m[1])
	if err != nil {
		return "", false
	}
	return LayerTensor(layer, suffix), true
}

// NeedsRopePermute reports whether a canonical tensor holds RoPE-rotated rows
// (q and k projections and their biases).
func NeedsRopePermute(canonical string) bool {
	return ropeRotated.MatchString(canonical)
}

// PermuteRotateHalfToInterleaved reorders the rows of a q or k projection
// from Hugging Face's rotate-half pairing to the interleaved pairing kvant
// stores. data holds rows of rowBytes bytes each (a bias has rowBytes equal
// to its element size); rows are grouped in heads of headDim.
//
// Within a head, Hugging Face row j*(headDim/2)+i (j in {0,1}) becomes row
// 2i+j. This is the inverse of the permute() in transformers'
// convert_llama_weights_to_hf.py.
func PermuteRotateHalfToInterleaved(data []byte, rows, rowBytes, headDim int) error {
	return permuteRows(data, rows, rowBytes, headDim, false)
}

// PermuteInterleavedToRotateHalf is the inverse of
// PermuteRotateHalfToInterleaved, used when exporting to formats that expect
// Hugging Face's order.
func PermuteInterleavedToRotateHalf(data []byte, rows, rowBytes, headDim int) error {
	return permuteRows(data, rows, rowBytes, headDim, true)
}

func permuteRows(data []byte, rows, rowBytes, headDim int, toRotateHalf bool) error {
	if headDim <= 0 || headDim%2 != 0 || rows%headDim != 0 || len(data) != rows*rowBytes {
		return fmt.Errorf("%w: cannot permute %d rows of %d bytes (%d bytes given) in heads of %d",
			ErrBadConfig, rows, rowBytes, len(data), headDim)
	}
	half := headDim / 2
	head := make([]byte, headDim*rowBytes)
	for h := 0; h < rows/headDim; h++ {
		block := data[h*headDim*rowBytes : (h+1)*headDim*rowBytes]
		copy(head, block)
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				rotateHalf, interleaved := j*half+i, 2*i+j
				src, dst := rotateHalf, interleaved
				if toRotateHalf {
					src, dst = interleaved, rotateHalf
				}
				copy(block[dst*rowBytes:(dst+1)*rowBytes], head[src*rowBytes:(src+1)*rowBytes])
			}
		}
	}
	return nil
}
