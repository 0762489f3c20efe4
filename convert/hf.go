package convert

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/model"
)

// hfArchitectures maps a config.json "architectures" entry to kvant's
// architecture name.
var hfArchitectures = map[string]string{
	"LlamaForCausalLM":   model.ArchLlama,
	"MistralForCausalLM": model.ArchMistral,
	"Qwen2ForCausalLM":   model.ArchQwen2,
}

// hfConfig is the subset of a Hugging Face config.json that describes a
// Llama-family architecture. Pointers tell "absent" from zero, because
// transformers fills absent fields with per-architecture defaults.
type hfConfig struct {
	Architectures         []string           `json:"architectures"`
	ModelType             string             `json:"model_type"`
	VocabSize             int                `json:"vocab_size"`
	HiddenSize            int                `json:"hidden_size"`
	IntermediateSize      int                `json:"intermediate_size"`
	NumHiddenLayers       int                `json:"num_hidden_layers"`
	NumAttentionHeads     int                `json:"num_attention_heads"`
	NumKeyValueHeads      *int               `json:"num_key_value_heads"`
	HeadDim               *int               `json:"head_dim"`
	RMSNormEps            *float64           `json:"rms_norm_eps"`
	RopeTheta             *float64           `json:"rope_theta"`
	RopeScaling           *model.RopeScaling `json:"rope_scaling"`
	MaxPositionEmbeddings int                `json:"max_position_embeddings"`
	TieWordEmbeddings     *bool              `json:"tie_word_embeddings"`
	AttentionBias         *bool              `json:"attention_bias"`
	HiddenAct             string             `json:"hidden_act"`
	BOSTokenID            *int               `json:"bos_token_id"`
	EOSTokenID            json.RawMessage    `json:"eos_token_id"`
}

// readHFConfig maps config.json (and generation_config.json beside it, whose
// token ids take precedence, as in transformers' generate) to a model.Config.
func readHFConfig(dir string) (model.Config, json.RawMessage, error) {
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return model.Config{}, nil, fmt.Errorf("%w: %v", ErrNoConfig, err)
	}
	var hc hfConfig
	if err := json.Unmarshal(raw, &hc); err != nil {
		return model.Config{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	var arch string
	for _, a := range hc.Architectures {
		if arch = hfArchitectures[a]; arch != "" {
			break
		}
	}
	if arch == "" {
		return model.Config{}, nil, fmt.Errorf("%s: architectures %v: %w (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
			path, hc.Architectures, ErrUnsupportedArchitecture)
	}
	if hc.HiddenAct != "" && hc.HiddenAct != "silu" {
		return model.Config{}, nil, fmt.Errorf("%s: hidden_act %q: %w (only silu)", path, hc.HiddenAct, ErrUnsupported)
	}
	cfg := model.Config{
		Architecture:   arch,
		VocabSize:      hc.VocabSize,
		Dim:            hc.HiddenSize,
		Layers:         hc.NumHiddenLayers,
		Heads:          hc.NumAttentionHeads,
		KVHeads:        hc.NumAttentionHeads,
		HiddenDim:      hc.IntermediateSize,
		NormEps:        1e-6,
		RopeTheta:      10000,
		RopeScaling:    hc.RopeScaling,
		MaxSeqLen:      hc.MaxPositionEmbeddings,
		TiedEmbeddings: false,
		AttentionBias:  arch == model.ArchQwen2,
		BOS:            -1,
	}
	if hc.NumKeyValueHeads != nil {
		cfg.KVHeads = *hc.NumKeyValueHeads
	}
	if hc.NumAttentionHeads > 0 {
		cfg.HeadDim = hc.HiddenSize / hc.NumAttentionHeads
	}
	if hc.HeadDim != nil {
		cfg.HeadDim = *hc.HeadDim
	}
	if hc.RMSNormEps != nil {
		cfg.NormEps = *hc.RMSNormEps
	}
	if hc.RopeTheta != nil {
		cfg.RopeTheta = *hc.RopeTheta
	}
	if hc.TieWordEmbeddings != nil {
		cfg.TiedEmbeddings = *hc.TieWordEmbeddings
	}
	if hc.AttentionBias != nil {
		cfg.AttentionBias = *hc.AttentionBias
	}
	if hc.BOSTokenID != nil {
		cfg.BOS = *hc.BOSTokenID
	}
	cfg.EOS = parseEOS(hc.EOSTokenID)

	var generation json.RawMessage
	if g, err := os.ReadFile(filepath.Join(dir, "generation_config.json")); err == nil {
		var gc struct {
			BOS *int            `json:"bos_token_id"`
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(g, &gc); err != nil {
			return model.Config{}, nil, fmt.Errorf("%s: %w", filepath.Join(dir, "generation_config.json"), err)
		}
		if gc.BOS != nil {
			cfg.BOS = *gc.BOS
		}
		if eos := parseEOS(gc.EOS); len(eos) > 0 {
			cfg.EOS = eos
		}
		generation = g
	} else if !errors.Is(err, os.ErrNotExist) {
		return model.Config{}, nil, err
	}
	if cfg.RopeScaling != nil && cfg.RopeScaling.Type == "" {
		// Older configs name the field "type" instead of "rope_type".
		var legacy struct {
			RS struct {
				Type string `json:"type"`
			} `json:"rope_scaling"`
		}
		json.Unmarshal(raw, &legacy)
		cfg.RopeScaling.Type = legacy.RS.Type
	}
	if err := cfg.Validate(); err != nil {
		return model.Config{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, generation, nil
}

// parseEOS reads an eos_token_id that may be a number or a list of numbers.
func parseEOS(raw json.RawMessage) []int {
	if len(raw) == 0 {
		return nil
	}
	var one int
	if json.Unmarshal(raw, &one) == nil {
		return []int{one}
	}
	var many []int
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}
