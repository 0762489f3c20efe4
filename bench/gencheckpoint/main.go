// Command gencheckpoint writes a synthetic Llama-shaped Hugging Face
// checkpoint (config.json plus sharded bf16 safetensors with an index) for
// memory and throughput benchmarks. The data is deterministic pseudo-random
// with the magnitudes of a trained model (weights about N(0, 0.02), norms
// near 1), generated as it is written, so a checkpoint of any size costs no
// memory to produce.
//
// With -sparse the shards are sparse files: each 2-D tensor gets real data
// only in its first row and the rest is a hole, which reads as zeros and
// takes no disk, so a 138 GB Llama-2-70B-shaped checkpoint fits in a few
// MB. Readers see a well-formed checkpoint of full size; docs/scale.md says
// what that does and does not exercise.
package main

import (
	"bytes"
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
		sparse                              = flag.Bool("sparse", false, "write sparse shards: real data in the first row of each 2-D tensor, holes (zeros, no disk) elsewhere")
	)
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gencheckpoint -o DIR [-dim N -layers N -heads N -kv-heads N -hidden N -vocab N -shard-size BYTES -sparse]")
		os.Exit(2)
	}
	if *dim <= 0 || *layers <= 0 || *heads <= 0 || *kvHeads <= 0 || *hidden <= 0 || *vocab <= 0 || *dim%*heads != 0 || *heads%*kvHeads != 0 {
		fmt.Fprintln(os.Stderr, "gencheckpoint: sizes must be positive, dim a multiple of heads and heads a multiple of kv-heads")
		os.Exit(2)
	}
	c := model.Config{Architecture: model.ArchLlama, VocabSize: *vocab, Dim: *dim, Layers: *layers,
		Heads: *heads, KVHeads: *kvHeads, HeadDim: *dim / *heads, HiddenDim: *hidden}
	if err := generate(*out, c, *shard, *sparse); err != nil {
		fmt.Fprintln(os.Stderr, "gencheckpoint:", err)
		os.Exit(1)
	}
}

// hfLayer gives the Hugging Face name of each canonical tensor suffix.
var hfLayer = map[string]string{
	model.AttnNorm: "input_layernorm.weight", model.AttnQ: "self_attn.q_proj.weight",
	model.AttnK: "self_attn.k_proj.weight", model.AttnV: "self_attn.v_proj.weight",
	model.AttnOutput: "self_attn.o_proj.weight", model.FFNNorm: "post_attention_layernorm.weight",
	model.FFNGate: "mlp.gate_proj.weight", model.FFNUp: "mlp.up_proj.weight", model.FFNDown: "mlp.down_proj.weight",
}

func generate(dir string, c model.Config, shardSize int64, sparse bool) error {
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
		noise := &bf16Noise{state: seed*0x9E3779B97F4A7C15 + 1, scale: scale}
		var data io.Reader = io.LimitReader(noise, 2*n)
		if sparse && len(shape) == 2 {
			// The first row is real, so the values the quantizer sees
			// are not all zero; the rest of the tensor is a hole.
			row := 2 * shape[1]
			data = io.MultiReader(io.LimitReader(noise, row), io.LimitReader(zeros{}, 2*n-row))
		}
		ts = append(ts, safetensors.WriteTensor{Name: hf, DType: format.BF16, Shape: shape, Data: data})
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
	meta := map[string]string{"format": "pt"}
	if !sparse {
		_, err := safetensors.WriteSharded(dir, ts, shardSize, meta)
		return err
	}
	return writeSparseShards(dir, ts, shardSize, meta)
}

// writeSparseShards does what safetensors.WriteSharded does (the same
// greedy packing, shard names and index) but writes each shard through a
// holeWriter, so runs of zeros become holes instead of disk blocks.
func writeSparseShards(dir string, ts []safetensors.WriteTensor, shardSize int64, meta map[string]string) error {
	if shardSize <= 0 {
		return fmt.Errorf("shard size %d must be positive", shardSize)
	}
	var groups [][]safetensors.WriteTensor
	var cur, total int64
	for _, t := range ts {
		size, err := format.PlainByteSize(t.DType, t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if len(groups) == 0 || (cur > 0 && cur+size > shardSize) {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
		cur += size
		total += size
	}
	var weightMap []safetensors.IndexEntry
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		if err := writeSparseFile(filepath.Join(dir, name), g, meta); err != nil {
			return err
		}
		for _, t := range g {
			weightMap = append(weightMap, safetensors.IndexEntry{Tensor: t.Name, File: name})
		}
	}
	return safetensors.WriteIndex(filepath.Join(dir, safetensors.IndexFileName), total, weightMap)
}

// writeSparseFile writes one shard to a temporary name, sets its length
// (the trailing hole has no bytes written), syncs and renames it, so path
// never holds a partial shard.
func writeSparseFile(path string, ts []safetensors.WriteTensor, meta map[string]string) error {
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	hw := &holeWriter{f: f}
	_, err = safetensors.Write(hw, ts, meta)
	if err == nil {
		err = f.Truncate(hw.off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// holeWriter writes to a file at a running offset, skipping (leaving a
// hole for) every Write that is all zeros. The writes come from a 1 MiB
// copy buffer, so zero runs are skipped a MiB at a time.
type holeWriter struct {
	f   *os.File
	off int64
}

var zeroBlock = make([]byte, 1<<20)

func (h *holeWriter) Write(p []byte) (int, error) {
	if allZero(p) {
		h.off += int64(len(p))
		return len(p), nil
	}
	n, err := h.f.WriteAt(p, h.off)
	h.off += int64(n)
	return n, err
}

func allZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
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
