// Package model holds what kvant knows about the Llama family of models: one
// configuration struct that every input format maps onto, the canonical
// tensor names, and the forward pass.
package model

import (
	"errors"
	"fmt"
)

// ErrBadConfig is wrapped by every configuration validation failure.
var ErrBadConfig = errors.New("invalid model config")

// Architectures kvant can convert and run.
const (
	ArchLlama   = "llama"
	ArchMistral = "mistral"
	ArchQwen2   = "qwen2"
)

// RopeScaling is Hugging Face's rope_scaling block. Only the "llama3" type
// (Llama-3.1) changes the frequencies; others are carried but rejected by the
// runner.
type RopeScaling struct {
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor,omitempty"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// Config is the architecture of a Llama-family model. It is stored as JSON
// under "config" in a .kvant file's metadata.
type Config struct {
	Architecture   string       `json:"architecture"`
	VocabSize      int          `json:"vocab_size"`
	Dim            int          `json:"dim"`
	Layers         int          `json:"n_layers"`
	Heads          int          `json:"n_heads"`
	KVHeads        int          `json:"n_kv_heads"`
	HeadDim        int          `json:"head_dim"`
	HiddenDim      int          `json:"hidden_dim"`
	NormEps        float64      `json:"norm_eps"`
	RopeTheta      float64      `json:"rope_theta"`
	RopeScaling    *RopeScaling `json:"rope_scaling,omitempty"`
	MaxSeqLen      int          `json:"max_seq_len"`
	TiedEmbeddings bool         `json:"tied_embeddings"`
	// AttentionBias is true when q, k and v projections carry biases (Qwen2).
	AttentionBias bool `json:"attention_bias"`
	// BOS and EOS token ids from the model's generation config, -1 if unknown.
	BOS int   `json:"bos_token_id"`
	EOS []int `json:"eos_token_ids,omitempty"`
}

// Validate checks the invariants the forward pass relies on.
func (c *Config) Validate() error {
	switch {
	case c.Architecture != ArchLlama && c.Architecture != ArchMistral && c.Architecture != ArchQwen2:
		return fmt.Errorf("%w: unsupported architecture %q (supported: llama, mistral, qwen2)", ErrBadConfig, c.Architecture)
	case c.VocabSize <= 0 || c.Dim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HiddenDim <= 0:
		return fmt.Errorf("%w: sizes must be positive (vocab %d, dim %d, layers %d, heads %d, kv heads %d, hidden %d)",
			ErrBadConfig, c.VocabSize, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HiddenDim)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("%w: %d heads is not a multiple of %d kv heads", ErrBadConfig, c.Heads, c.KVHeads)
	case c.HeadDim <= 0 || c.HeadDim%2 != 0:
		return fmt.Errorf("%w: head dim %d must be positive and even", ErrBadConfig, c.HeadDim)
	case c.NormEps <= 0:
		return fmt.Errorf("%w: norm eps %g must be positive", ErrBadConfig, c.NormEps)
	case c.RopeTheta <= 0:
		return fmt.Errorf("%w: rope theta %g must be positive", ErrBadConfig, c.RopeTheta)
	}
	return nil
}
