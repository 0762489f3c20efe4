// Command gencheckpoint writes a synthetic Llama-shaped Hugging Face
// checkpoint (config.json plus sharded bf16 safetensors with an index) for
// memory and throughput benchmarks. The data is deterministic pseudo-random
// with the magnitudes of a trained model (weights about N(0, 0.02), norms
// near 1), generated as it is written, so a checkpoint of any size costs no
// memory to produce.
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/safetensors"
	"github.com/kvant-dev/kvant/model"
)

func main() {
	var (
		out                                 = flag.String("o", "", "output directory")
		dim, layers, heads, kvHeads, hidden = flag.Int("dim", 2048, "hidden size"), flag.Int("layers", 18, "layers"), flag.Int("heads", 32, "attention heads"), flag.Int("kv-heads", 8, "kv heads"), flag.Int("hidden", 5632, "intermediate size")
		vocab                               = flag.Int("vocab", 32000, "vocabulary size")
		shard                               = flag.Int64("shard-size", 1<<30, "max bytes of data per shard")
	)
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: gencheckpoint -o DIR [-dim N -layers N -heads N -kv-heads N -hidden N -vocab N]")
		os.Exit(2)
	}
	if err := generate(*out, model.Config{Architecture: model.ArchLlama, VocabSize: *vocab, Dim: *dim, Layers: *layers,
		Heads: *heads, KVHeads: *kvHeads, HeadDim: *dim / *heads, HiddenDim: *hidden}, *shard); err != nil {
		fmt.Fprintln(os.Stderr, "gencheckpoint:", err)
		os.Exit(1)
	}
}

// hfNames lists the Hugging Face name of each canonical tensor suffix.
var hfLayer = map[string]string{
	model.AttnNorm: "input_layernorm.weight", model.AttnQ: "self_attn.q_proj.weight",
	model.AttnK: "self_attn.k_proj.weight", model.AttnV: "self_attn.v_proj.weight",
	model.AttnOutput: "self_attn.o_proj.weight", model.FFNNorm: "post_attention_layernorm.weight",
	model.FFNGate: "mlp.gate_proj.weight", model.FFNUp: "mlp.up_proj.weight", model.FFNDown: "mlp.down_proj.weight",
}

func generate(dir string, c model.Config, shardSize int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	shapes := convert.ExpectedShapes(c)
	var ts []safetensors.WriteTensor
	add := func(hf, canon string, seed uint64) {
		shape := shapes[canon]
		n, _ := format.NumElements(shape)
		scale := float32(0.02)
		if len(shape) == 1 {
			scale = 0 // norms: 1 + small noise
		}
		ts = append(ts, safetensors.WriteTensor{Name: hf, DType: format.BF16, Shape: shape,
			Data: io.LimitReader(&bf16Noise{state: seed*0x9E3779B97F4A7C15 + 1, scale: scale}, 2*n)})
	}
	add("model.embed_tokens.weight", model.TokenEmbedding, 1)
	for l := 0; l < c.Layers; l++ {
		for i, suffix := range []string{model.AttnNorm, model.AttnQ, model.AttnK, model.AttnV, model.AttnOutput,
			model.FFNNorm, model.FFNGate, model.FFNUp, model.FFNDown} {
			add(fmt.Sprintf("model.layers.%d.%s", l, hfLayer[suffix]), model.LayerTensor(l, suffix), uint64(100+l*16+i))
		}
	}
	add("model.norm.weight", model.OutputNorm, 2)
	add("lm_head.weight", model.Output, 3)
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "vocab_size": c.VocabSize,
		"hidden_size": c.Dim, "intermediate_size": c.HiddenDim, "num_hidden_layers": c.Layers,
		"num_attention_heads": c.Heads, "num_key_value_heads": c.KVHeads, "rms_norm_eps": 1e-5,
		"rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": false,
		"torch_dtype": "bfloat16", "hidden_act": "silu",
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		return err
	}
	_, err := safetensors.WriteSharded(dir, ts, shardSize, map[string]string{"format": "pt"})
	return err
}

// bf16Noise is an endless reader of pseudo-random bf16 values: uniform in
// [-scale·√3, scale·√3] (standard deviation scale), or 1 ± 0.05 when scale
// is 0.
type bf16Noise struct {
	state uint64
	scale float32
}

func (r *bf16Noise) Read(p []byte) (int, error) {
	n := len(p) &^ 1
	for i := 0; i < n; i += 2 {
		// xorshift64*: fast, deterministic, good enough for weights.
		r.state ^= r.state >> 12
		r.state ^= r.state << 25
		r.state ^= r.state >> 27
		u := float32((r.state*0x2545F4914F6CDD1D)>>40)/float32(1<<24)*2 - 1
		v := u * r.scale * float32(math.Sqrt(3))
		if r.scale == 0 {
			v = 1 + 0.05*u
		}
		binary.LittleEndian.PutUint16(p[i:], convert.Float32ToBF16(v))
	}
	return n, nil
}
