package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvant-dev/kvant/convert"
	"github.com/kvant-dev/kvant/format"
	"github.com/kvant-dev/kvant/format/safetensors"
	"github.com/kvant-dev/kvant/internal/cli"
	"github.com/kvant-dev/kvant/internal/testutil"
	"github.com/kvant-dev/kvant/model"
)

// run executes kvant-convert in-process and returns its exit code, stdout
// and stderr.
func run(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	root := newRoot()
	root.SetOut(&stdout)
	code := cli.Run(root, append(args, "-q"), &stderr)
	return code, stdout.String(), stderr.String()
}

// tinyHF writes a small, valid Llama model as a Hugging Face directory.
func tinyHF(t *testing.T, sharded bool) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": 16, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
		"num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
		"max_position_embeddings": 32, "tie_word_embeddings": false,
	}
	raw, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644)
	c := model.Config{Architecture: "llama", VocabSize: 16, Dim: 8, Layers: 1, Heads: 2, KVHeads: 1, HeadDim: 4, HiddenDim: 12}
	shapes := convert.ExpectedShapes(c)
	hfName := map[string]string{}
	for _, n := range []string{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
		"model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight",
		"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
		"model.layers.0.self_attn.o_proj.weight", "model.layers.0.post_attention_layernorm.weight",
		"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight"} {
		canon, _ := model.CanonicalName(model.StyleHF, n)
		hfName[canon] = n
	}
	rng := rand.New(rand.NewSource(1))
	var ts []safetensors.WriteTensor
	for _, canon := range []string{model.TokenEmbedding, model.LayerTensor(0, model.AttnNorm), model.LayerTensor(0, model.AttnQ),
		model.LayerTensor(0, model.AttnK), model.LayerTensor(0, model.AttnV), model.LayerTensor(0, model.AttnOutput),
		model.LayerTensor(0, model.FFNNorm), model.LayerTensor(0, model.FFNGate), model.LayerTensor(0, model.FFNUp),
		model.LayerTensor(0, model.FFNDown), model.OutputNorm, model.Output} {
		shape := shapes[canon]
		n, _ := format.NumElements(shape)
		data := make([]byte, 4*n)
		for i := int64(0); i < n; i++ {
			binary.LittleEndian.PutUint32(data[4*i:], uint32(rng.Int31()))
		}
		ts = append(ts, safetensors.WriteTensor{Name: hfName[canon], DType: format.F32, Shape: shape, Data: bytes.NewReader(data)})
	}
	if sharded {
		if _, err := safetensors.WriteSharded(dir, ts, 600, nil); err != nil {
			t.Fatal(err)
		}
	} else if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConvertTinyHF(t *testing.T) {
	for _, sharded := range []bool{false, true} {
		dir := tinyHF(t, sharded)
		out := filepath.Join(t.TempDir(), "m.kvant")
		code, stdout, stderr := run(dir, "-o", out, "--json")
		if code != cli.ExitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var res convert.Result
		if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Tensors != 12 {
			t.Fatalf("json output %q: %v", stdout, err)
		}
		if code, _, stderr := run("verify", out); code != cli.ExitOK {
			t.Fatalf("verify exit %d: %s", code, stderr)
		}
		code, stdout, _ = run("inspect", out, "--json")
		var ins convert.Inspection
		if code != 0 || json.Unmarshal([]byte(stdout), &ins) != nil || ins.Totals.Tensors != 12 || ins.Config.KVHeads != 1 {
			t.Fatalf("inspect: exit %d, %+v", code, ins)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := run(); code != cli.ExitUsage {
		t.Fatalf("no args: exit %d", code)
	}
	if code, _, _ := run("x", "--no-such-flag"); code != cli.ExitUsage {
		t.Fatalf("bad flag: exit %d", code)
	}
	if code, _, _ := run(tinyHF(t, false)); code != cli.ExitUsage {
		t.Fatalf("missing -o: exit %d", code)
	}
}

func TestVerifyCorruption(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.kvant")
	if code, _, stderr := run(tinyHF(t, false), "-o", out); code != 0 {
		t.Fatal(stderr)
	}
	f, _ := format.Open(out)
	e, _ := f.Entry("blk.0.ffn_up.weight")
	f.Close()
	b, _ := os.ReadFile(out)
	b[e.Offset+17] ^= 0x40
	os.WriteFile(out, b, 0o644)
	code, _, stderr := run("verify", out)
	if code != cli.ExitCheckFailed || !strings.Contains(stderr, `"blk.0.ffn_up.weight"`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// Every kind of bad input must give a non-zero exit, an error naming the
// file and the tensor or offset, and no output file.
func TestBadInputs(t *testing.T) {
	type badCase struct {
		name    string
		make    func(t *testing.T) string // returns the source to convert
		mention []string
	}
	single := func(t *testing.T) (string, string, []byte) {
		dir := tinyHF(t, false)
		p := filepath.Join(dir, "model.safetensors")
		b, _ := os.ReadFile(p)
		return dir, p, b
	}
	editHeader := func(t *testing.T, edit func(h map[string]any)) (string, string) {
		dir, p, b := single(t)
		n := binary.LittleEndian.Uint64(b)
		var h map[string]any
		json.Unmarshal(b[8:8+n], &h)
		edit(h)
		raw, _ := json.Marshal(h)
		for len(raw)%8 != 0 {
			raw = append(raw, ' ')
		}
		// Offsets are relative to the end of the header, so the data can
		// follow a header of another length unchanged.
		out := binary.LittleEndian.AppendUint64(nil, uint64(len(raw)))
		out = append(append(out, raw...), b[8+n:]...)
		os.WriteFile(p, out, 0o644)
		return dir, p
	}
	q := "model.layers.0.self_attn.q_proj.weight"
	cases := []badCase{
		{"header length beyond end", func(t *testing.T) string {
			dir, p, b := single(t)
			binary.LittleEndian.PutUint64(b, uint64(len(b)+100))
			os.WriteFile(p, b, 0o644)
			return dir
		}, []string{"model.safetensors", "byte 0"}},
		{"offset out of range", func(t *testing.T) string {
			dir, _ := editHeader(t, func(h map[string]any) {
				h["lm_head.weight"].(map[string]any)["data_offsets"] = []int{0, 1 << 30}
			})
			return dir
		}, []string{"model.safetensors", "lm_head.weight"}},
		{"overlapping offsets", func(t *testing.T) string {
			dir, _ := editHeader(t, func(h map[string]any) {
				h[q].(map[string]any)["data_offsets"] = h["model.embed_tokens.weight"].(map[string]any)["data_offsets"]
			})
			return dir
		}, []string{"model.safetensors", "offset"}},
		{"shape does not match length", func(t *testing.T) string {
			dir, _ := editHeader(t, func(h map[string]any) { h[q].(map[string]any)["shape"] = []int{8, 9} })
			return dir
		}, []string{"model.safetensors", q}},
		{"unknown dtype", func(t *testing.T) string {
			dir, _ := editHeader(t, func(h map[string]any) { h[q].(map[string]any)["dtype"] = "F8_E4M3" })
			return dir
		}, []string{"model.safetensors", q}},
		{"missing shard", func(t *testing.T) string {
			dir := tinyHF(t, true)
			os.Remove(shards(t, dir)[1])
			return dir
		}, []string{"model-00002-of-"}},
		{"duplicate tensor across shards", func(t *testing.T) string {
			dir := tinyHF(t, true)
			// Copy shard 1 over shard 2: its tensors now appear twice.
			sh := shards(t, dir)
			b, _ := os.ReadFile(sh[0])
			os.WriteFile(sh[1], b, 0o644)
			return dir
		}, []string{"model-0000"}},
		{"pickle calling os.system", func(t *testing.T) string {
			return testutil.Testdata(t, "pytorch", "evil_global.pt")
		}, []string{"evil_global.pt", "os", "system"}},
		{"compressed zip entry", func(t *testing.T) string {
			return testutil.Testdata(t, "pytorch", "compressed.pt")
		}, []string{"compressed.pt"}},
		{"llama2.c file with a bad header", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "bad.bin")
			hdr := make([]byte, 28+64)
			for i, v := range []int32{64, 172, 5, 8, 3, 512, 512} { // 3 kv heads do not divide 8 heads
				binary.LittleEndian.PutUint32(hdr[4*i:], uint32(v))
			}
			os.WriteFile(p, hdr, 0o644)
			return p
		}, []string{"bad.bin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := c.make(t)
			outDir := t.TempDir()
			out := filepath.Join(outDir, "m.kvant")
			code, _, stderr := run(src, "-o", out)
			if code != cli.ExitFailure {
				t.Fatalf("exit %d, want %d; stderr %q", code, cli.ExitFailure, stderr)
			}
			for _, m := range c.mention {
				if !strings.Contains(stderr, m) {
					t.Errorf("error %q does not mention %q", stderr, m)
				}
			}
			if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
				t.Fatalf("left %v in the output directory", entries)
			}
		})
	}
}

// A file truncated at many points never converts and never leaves output.
func TestTruncatedSafetensors(t *testing.T) {
	dir := tinyHF(t, false)
	p := filepath.Join(dir, "model.safetensors")
	full, _ := os.ReadFile(p)
	outDir := t.TempDir()
	for _, cut := range []int{0, 4, 8, 100, len(full) / 2, len(full) - 1} {
		os.WriteFile(p, full[:cut], 0o644)
		code, _, stderr := run(dir, "-o", filepath.Join(outDir, "m.kvant"))
		if code != cli.ExitFailure || !strings.Contains(stderr, "model.safetensors") {
			t.Fatalf("cut at %d: exit %d, %q", cut, code, stderr)
		}
		if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
			t.Fatalf("cut at %d left %v", cut, entries)
		}
	}
}

func shards(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	if len(m) < 2 {
		t.Fatalf("want at least 2 shards, got %v", m)
	}
	return m
}
