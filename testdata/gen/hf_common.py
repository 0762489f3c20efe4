"""Shared helpers for kvant's fixture generators (plain torch + numpy, no transformers).

- TinyCausalLM: a from-scratch re-implementation of Hugging Face's
  LlamaForCausalLM / Qwen2ForCausalLM forward pass (eager attention path),
  with HF tensor names, so its state_dict() is a valid HF checkpoint.
- write_safetensors / read_safetensors: the safetensors container written and
  parsed by hand (no safetensors Python package is available).
- save_sharded_safetensors: HF-style sharding with model.safetensors.index.json.

Everything here is deterministic given the same inputs.
"""

import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """HF LlamaRMSNorm / Qwen2RMSNorm: computed in float32, cast back, then * weight."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x):
        in_dtype = x.dtype
        h = x.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * h.to(in_dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cos_sin(seq_len, head_dim, theta, device=None):
    """HF rotary embedding (default rope_type): cos/sin of cat(freqs, freqs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    t = torch.arange(seq_len, dtype=torch.int64).float()
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg["hidden_size"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.head_dim = h // self.n_heads
        qkv_bias = cfg["model_type"] == "qwen2"
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=False)

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # HF repeat_kv: query head h uses kv head h // (n_heads // n_kv)
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k = k[:, :, None].expand(b, self.n_kv, rep, s, self.head_dim).reshape(b, self.n_heads, s, self.head_dim)
            v = v[:, :, None].expand(b, self.n_kv, rep, s, self.head_dim).reshape(b, self.n_heads, s, self.head_dim)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        mask = torch.full((s, s), float("-inf"), dtype=scores.dtype).triu(1)
        scores = scores + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class TinyCausalLM(nn.Module):
    """LlamaForCausalLM / Qwen2ForCausalLM with HF parameter names.

    With tie_word_embeddings the logits use model.embed_tokens.weight and no
    lm_head parameter exists (so state_dict() has no lm_head.weight)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        self.model = Backbone(cfg)
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        if not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]

    def init_weights(self, std=0.02):
        """HF _init_weights: normal(0, initializer_range) for Linear/Embedding, zero bias, norms 1."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)

    def forward(self, ids):
        """ids: int64 [batch, seq] -> logits float32 [batch, seq, vocab]."""
        s = ids.shape[1]
        cos, sin = rope_cos_sin(s, self.head_dim, self.cfg["rope_theta"])
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        x = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return F.linear(x, w)


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def hf_order(names):
    """Order tensor names as HF checkpoints usually do: embed, layers by index, norm, lm_head."""
    def key(n):
        if n.startswith("model.embed_tokens"):
            return (0, 0, n)
        if n.startswith("model.layers."):
            return (1, int(n.split(".")[2]), n)
        if n.startswith("model.norm"):
            return (2, 0, n)
        return (3, 0, n)
    return sorted(names, key=key)


# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

_ST_DTYPES = {
    torch.float32: ("F32", torch.int32, np.int32, 4),
    torch.float16: ("F16", torch.int16, np.int16, 2),
    torch.bfloat16: ("BF16", torch.int16, np.int16, 2),
}
_ST_FROM_NAME = {
    "F32": (torch.float32, torch.int32, np.dtype("<i4")),
    "F16": (torch.float16, torch.int16, np.dtype("<i2")),
    "BF16": (torch.bfloat16, torch.int16, np.dtype("<i2")),
}


def tensor_bytes(t):
    """Raw little-endian bytes of a float tensor (bit pattern preserved, incl. bf16)."""
    name, int_t, np_t, _ = _ST_DTYPES[t.dtype]
    a = t.detach().contiguous().view(int_t).numpy()
    return a.astype(np.dtype(np_t).newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> tensor. Data laid out in the given order."""
    header = {}
    blobs = []
    off = 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {
            "dtype": _ST_DTYPES[t.dtype][0],
            "shape": list(t.shape),
            "data_offsets": [off, off + len(b)],
        }
        blobs.append(b)
        off += len(b)
    meta = {"format": "pt"}
    if metadata:
        meta.update(metadata)
    full = {"__metadata__": meta}
    full.update(header)
    hjson = json.dumps(full, separators=(",", ":")).encode("utf-8")
    pad = (8 - len(hjson) % 8) % 8
    hjson += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return off


def read_safetensors(path):
    """Returns (ordered dict name -> tensor, metadata). Strict validation of the layout."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    data = raw[8 + hlen:]
    meta = header.pop("__metadata__", {})
    out = {}
    end_max = 0
    for name, info in header.items():
        dt, int_t, np_t = _ST_FROM_NAME[info["dtype"]]
        a, b = info["data_offsets"]
        n = int(np.prod(info["shape"])) if info["shape"] else 1
        assert b - a == n * np_t.itemsize, name
        arr = np.frombuffer(data[a:b], dtype=np_t).copy()
        t = torch.from_numpy(arr.astype(np_t.newbyteorder("="))).view(dt).reshape(info["shape"])
        out[name] = t
        end_max = max(end_max, b)
    assert end_max == len(data), "trailing bytes in %s" % path
    return out, meta


def save_sharded_safetensors(dirpath, state, dtype, n_shards=2):
    """Write model-0000i-of-0000n.safetensors + model.safetensors.index.json.

    Tensors (HF order) are split so each shard holds roughly 1/n of the bytes;
    a tensor is never split across shards."""
    names = hf_order(list(state.keys()))
    conv = {n: state[n].detach().to(dtype).contiguous() for n in names}
    sizes = {n: conv[n].numel() * conv[n].element_size() for n in names}
    total = sum(sizes.values())
    shards = [[] for _ in range(n_shards)]
    acc = 0
    for n in names:
        idx = min(n_shards - 1, int(acc * n_shards // total))
        shards[idx].append(n)
        acc += sizes[n]
    assert all(shards), "empty shard"
    weight_map = {}
    files = []
    for i, sn in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n_shards)
        write_safetensors(os.path.join(dirpath, fname), {n: conv[n] for n in sn})
        for n in sn:
            weight_map[n] = fname
        files.append(fname)
    index = {"metadata": {"total_size": total},
             "weight_map": {k: weight_map[k] for k in sorted(weight_map)}}
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return files, total


def load_sharded_safetensors(dirpath):
    with open(os.path.join(dirpath, "model.safetensors.index.json")) as f:
        index = json.load(f)
    out = {}
    total = 0
    for fname in sorted(set(index["weight_map"].values())):
        tensors, meta = read_safetensors(os.path.join(dirpath, fname))
        assert meta.get("format") == "pt"
        for n, t in tensors.items():
            assert index["weight_map"][n] == fname, n
            out[n] = t
            total += t.numel() * t.element_size()
    assert set(out) == set(index["weight_map"])
    assert total == index["metadata"]["total_size"]
    return out


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
