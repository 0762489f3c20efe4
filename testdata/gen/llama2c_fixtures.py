#!/usr/bin/env python3
"""Writes the llama2.c test fixtures in testdata/llama2c/.

A tiny random Llama (dim 16, hidden 40, 2 layers, 4 heads, 2 kv heads,
vocab 32, seq_len 8) is written in every llama2.c layout, following the
byte layouts of karpathy/llama2.c export.py (legacy_export = v0,
version1_export = v1, version2_export = v2 with Q8_0 groups of 8), with code
written here (numpy only, no torch), plus the expected values the Go reader
must return:

  tiny_v0_shared.bin    v0, classifier shared (positive vocab_size)
  tiny_v0_unshared.bin  v0, negative vocab_size, wcls at the end
  tiny_v1_shared.bin    v1, shared_classifier = 1
  tiny_v1_unshared.bin  v1, shared_classifier = 0, output last
  tiny_v2_shared.bin    v2, group size 8, embedding quantized once
  tiny_v2_unshared.bin  v2, group size 8, output quantized last
  tiny_expected.json    header values and, per canonical tensor, its shape
                        and whether v2 quantizes it, in the order of the
                        .f32/.i8 files below
  tiny_expected.f32     all canonical tensors, fp32, concatenated
  tiny_expected_v2.f32  the same as a v2 reader must return them:
                        quantized tensors dequantized (q * scale, in fp32)
  tiny_expected_v2_q.i8       int8 values of the quantized tensors
  tiny_expected_v2_scales.f32 their scales
  tiny_expected_rope.f32      v0's freq_cis_real then freq_cis_imag

Run from the repository root: python3 testdata/gen/llama2c_fixtures.py
The output is deterministic (fixed seed).
"""
import json
import os
import struct

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "llama2c")

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ_LEN = 16, 40, 2, 4, 2, 32, 8
GROUP_SIZE = 8
HEAD_SIZE = DIM // HEADS
KV_DIM = DIM * KV_HEADS // HEADS
MAGIC = 0x616B3432

rng = np.random.default_rng(20240607)


def randn(*shape, scale=0.1, offset=0.0):
    return (offset + scale * rng.standard_normal(shape)).astype(np.float32)


# The model, with llama2.c's names. Norm weights sit around 1 and matrices
# around 0 so that a tensor read from the wrong place is obvious.
tok = randn(VOCAB, DIM)
layers = []
for _ in range(LAYERS):
    layers.append({
        "attention_norm": randn(DIM, offset=1.0),
        "wq": randn(DIM, DIM),
        "wk": randn(KV_DIM, DIM),
        "wv": randn(KV_DIM, DIM),
        "wo": randn(DIM, DIM),
        "ffn_norm": randn(DIM, offset=1.0),
        "w1": randn(HIDDEN, DIM),
        "w2": randn(DIM, HIDDEN),
        "w3": randn(HIDDEN, DIM),
    })
norm = randn(DIM, offset=1.0)
output = randn(VOCAB, DIM)

# RoPE tables as llama2.c model.py's precompute_freqs_cis builds them (in
# float32) and legacy_export slices them to seq_len.
inv_freq = (1.0 / (10000.0 ** (np.arange(0, HEAD_SIZE, 2, dtype=np.float32)[: HEAD_SIZE // 2] / HEAD_SIZE))).astype(np.float32)
angles = np.outer(np.arange(SEQ_LEN, dtype=np.float32), inv_freq).astype(np.float32)
freqs_cos = np.cos(angles).astype(np.float32)
freqs_sin = np.sin(angles).astype(np.float32)


def fp32(a):
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def per_layer(key):
    return [l[key] for l in layers]


def params_header(vocab):
    return struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, vocab, SEQ_LEN)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def v0(shared):
    out = [params_header(VOCAB if shared else -VOCAB), fp32(tok)]
    for key in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
        out += [fp32(w) for w in per_layer(key)]
    out += [fp32(norm), fp32(freqs_cos), fp32(freqs_sin)]
    if not shared:
        out.append(fp32(output))
    return b"".join(out)


def header256(version, shared, extra=b""):
    h = struct.pack("<Ii", MAGIC, version) + params_header(VOCAB) + struct.pack("<B", int(shared)) + extra
    return h + b"\0" * (256 - len(h))


def v1(shared):
    out = [header256(1, shared)]
    ws = per_layer("attention_norm") + per_layer("ffn_norm") + [norm, tok]
    for key in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        ws += per_layer(key)
    if not shared:
        ws.append(output)
    out += [fp32(w) for w in ws]
    return b"".join(out)


def quantize_q80(w):
    """Symmetric int8 in groups, as export.py's quantize_q80 (float32 math,
    round half to even like torch.round)."""
    g = w.astype(np.float32).reshape(-1, GROUP_SIZE)
    scale = (np.abs(g).max(axis=1) / np.float32(127.0)).astype(np.float32)
    q = np.round(g / scale[:, None]).astype(np.int8)
    deq = (q.astype(np.float32) * scale[:, None]).astype(np.float32).reshape(w.shape)
    return q.reshape(-1), scale, deq


def v2(shared):
    out = [header256(2, shared, struct.pack("<i", GROUP_SIZE))]
    out += [fp32(w) for w in per_layer("attention_norm") + per_layer("ffn_norm") + [norm]]
    ws = [tok]
    for key in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        ws += per_layer(key)
    if not shared:
        ws.append(output)
    for w in ws:
        q, s, _ = quantize_q80(w)
        out += [q.astype("i1").tobytes(), fp32(s)]
    return b"".join(out)


def canonical():
    """(name, array, quantized in v2) in kvant's canonical order."""
    ts = [("token_embd.weight", tok, True)]
    for i, l in enumerate(layers):
        p = f"blk.{i}."
        ts += [
            (p + "attn_norm.weight", l["attention_norm"], False),
            (p + "attn_q.weight", l["wq"], True),
            (p + "attn_k.weight", l["wk"], True),
            (p + "attn_v.weight", l["wv"], True),
            (p + "attn_output.weight", l["wo"], True),
            (p + "ffn_norm.weight", l["ffn_norm"], False),
            (p + "ffn_gate.weight", l["w1"], True),
            (p + "ffn_up.weight", l["w3"], True),
            (p + "ffn_down.weight", l["w2"], True),
        ]
    ts += [("output_norm.weight", norm, False), ("output.weight", output, True)]
    return ts


def main():
    os.makedirs(OUT, exist_ok=True)
    for shared in (True, False):
        suffix = "shared" if shared else "unshared"
        write(f"tiny_v0_{suffix}.bin", v0(shared))
        write(f"tiny_v1_{suffix}.bin", v1(shared))
        write(f"tiny_v2_{suffix}.bin", v2(shared))

    manifest = {
        "dim": DIM, "hidden_dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS,
        "n_kv_heads": KV_HEADS, "vocab_size": VOCAB, "seq_len": SEQ_LEN, "group_size": GROUP_SIZE,
        "tensors": [],
    }
    plain, dequant, qvals, scales = [], [], [], []
    for name, w, quantized in canonical():
        manifest["tensors"].append({"name": name, "shape": list(w.shape), "quantized": quantized})
        plain.append(fp32(w))
        if quantized:
            q, s, deq = quantize_q80(w)
            dequant.append(fp32(deq))
            qvals.append(q.astype("i1").tobytes())
            scales.append(fp32(s))
        else:
            dequant.append(fp32(w))
    write("tiny_expected.f32", b"".join(plain))
    write("tiny_expected_v2.f32", b"".join(dequant))
    write("tiny_expected_v2_q.i8", b"".join(qvals))
    write("tiny_expected_v2_scales.f32", b"".join(scales))
    write("tiny_expected_rope.f32", fp32(freqs_cos) + fp32(freqs_sin))
    with open(os.path.join(OUT, "tiny_expected.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
