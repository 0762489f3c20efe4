#!/usr/bin/env python3
"""Regenerate kvant's embedded tiny models and their fixtures.

    python3 testdata/gen/train_tiny.py            # from the repo root

Builds (see testdata/gen/README.md):
  testdata/tiny-llama/   LlamaForCausalLM (~1.0 M params, GQA, untied) trained on the KJV Bible,
                         as pt-zip/, pt-legacy/, st-bf16/, st-fp16/ HF directories + references
  testdata/tiny-qwen2/   Qwen2ForCausalLM (qkv bias, tied embeddings), pt-zip/ and st-bf16/
Needs Debian packages: python3-torch python3-sentencepiece python3-numpy bible-kjv
(bible-kjv-text), and preferably libopenblas0-serial (see README for why).
"""

import os
import sys


def _reexec_if_needed():
    """Run under Debian's python (where python3-torch lives) with a single-threaded
    OpenBLAS if available. Both matter for speed and for bit-reproducibility."""
    env = dict(os.environ)
    changed = False
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if env.get(k) != "1":
            env[k] = "1"
            changed = True
    ob = "/usr/lib/x86_64-linux-gnu/openblas-serial"
    if os.path.isdir(ob) and ob not in env.get("LD_LIBRARY_PATH", "").split(":"):
        env["LD_LIBRARY_PATH"] = ob + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        changed = True
    exe = sys.executable
    try:
        import torch  # noqa: F401
        import sentencepiece  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") and os.path.exists("/usr/bin/python3"):
            exe = "/usr/bin/python3"
            changed = True
        else:
            raise
    if changed and env.get("KVANT_GEN_REEXEC") != "1":
        env["KVANT_GEN_REEXEC"] = "1"
        os.execve(exe, [exe] + sys.argv, env)


_reexec_if_needed()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_common import (  # noqa: E402
    TinyCausalLM, count_params, hf_order, load_sharded_safetensors,
    save_sharded_safetensors, write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)

SEED = 1234
CTX = 128            # training / eval window length incl. BOS
HELDOUT_FRAC = 0.05  # contiguous tail of the verse list
VOCAB = 1024

PROMPTS = [
    "In the beginning God created",
    "And the LORD said unto Moses,",
    "Blessed are the",
    "For God so loved the world,",
]
GREEDY_TOKENS = 16

LLAMA_CFG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 256,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "mlp_bias": False,
    "pretraining_tp": 1,
    "tie_word_embeddings": False,
    "use_cache": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
    "transformers_version": "4.44.0",
}

QWEN2_CFG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "vocab_size": VOCAB,
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 256,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "attention_dropout": 0.0,
    "use_sliding_window": False,
    "sliding_window": None,
    "max_window_layers": 4,
    "tie_word_embeddings": True,
    "use_cache": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
    "transformers_version": "4.44.0",
}

TRAIN = {
    "llama": dict(steps=600, batch=16, lr=3e-3, min_lr=3e-4, warmup=30, weight_decay=0.1,
                  betas=(0.9, 0.95), grad_clip=1.0, log_every=50),
    "qwen2": dict(steps=200, batch=16, lr=3e-3, min_lr=3e-4, warmup=20, weight_decay=0.1,
                  betas=(0.9, 0.95), grad_clip=1.0, log_every=50),
}


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------

def load_corpus():
    """All 31,102 KJV verses, one per line, reference prefix stripped.

    Text comes from Debian's bible-kjv-text (/usr/lib/bible.data, a compressed
    format) decoded by the `bible` program from the bible-kjv package."""
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, check=True).stdout.decode("ascii")
    verses, refs = [], []
    for line in out.splitlines():
        if not line.strip():
            continue
        ref, text = line.split(" ", 1)
        refs.append(ref)
        verses.append(text.strip())
    assert len(verses) == 31102, len(verses)
    return refs, verses


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

def train_tokenizer(train_verses, out_path):
    # sentence_iterator + model_writer keep temp-file paths out of the saved
    # trainer_spec, so tokenizer.model is byte-reproducible.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train_verses),
        model_writer=buf,
        model_type="bpe",
        vocab_size=VOCAB,
        byte_fallback=True,
        split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        max_sentence_length=4096,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
    )
    with open(out_path, "wb") as f:
        f.write(buf.getvalue())
    return spm.SentencePieceProcessor(model_file=out_path)


def tokenizer_files(outdir, tok_model):
    shutil.copyfile(tok_model, os.path.join(outdir, "tokenizer.model"))
    write_json(os.path.join(outdir, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 256,
        "sp_model_kwargs": {},
        "added_tokens_decoder": {
            "0": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
            "1": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
            "2": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
        },
    })
    write_json(os.path.join(outdir, "special_tokens_map.json"), {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    })


def write_hf_meta(outdir, cfg, tok_model):
    os.makedirs(outdir, exist_ok=True)
    write_json(os.path.join(outdir, "config.json"), cfg)
    write_json(os.path.join(outdir, "generation_config.json"), {
        "_from_model_config": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "do_sample": False,
        "transformers_version": cfg["transformers_version"],
    })
    tokenizer_files(outdir, tok_model)


META_FILES = ["config.json", "generation_config.json", "tokenizer.model",
              "tokenizer_config.json", "special_tokens_map.json"]


def copy_meta(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in META_FILES:
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def encode_stream(sp, verses):
    """Token stream: each verse's pieces followed by EOS. Returns (stream, verse_starts)."""
    ids_list = sp.encode(verses)
    stream, starts = [], []
    for ids in ids_list:
        starts.append(len(stream))
        stream.extend(ids)
        stream.append(sp.eos_id())
    return np.array(stream, dtype=np.int64), np.array(starts, dtype=np.int64)


def eval_windows(stream, starts):
    """Partition the held-out stream into windows of <= CTX-1 scored tokens, each
    starting at a verse boundary when possible; every token is scored exactly once.
    Returns list of (pos, end): inputs [BOS]+stream[pos:end-1], targets stream[pos:end]."""
    n = len(stream)
    start_set = starts.tolist()
    wins = []
    pos = 0
    j = 0
    while pos < n:
        end = min(pos + CTX - 1, n)
        if end < n:
            # last verse start in (pos, end]
            while j < len(start_set) and start_set[j] <= pos:
                j += 1
            k = j
            best = None
            while k < len(start_set) and start_set[k] <= end:
                best = start_set[k]
                k += 1
            if best is not None:
                end = best
        wins.append((pos, end))
        pos = end
    return wins


@torch.no_grad()
def heldout_nll(model, stream, starts, bos):
    model.eval()
    wins = eval_windows(stream, starts)
    total, count = 0.0, 0
    for pos, end in wins:
        x = torch.tensor([[bos] + stream[pos:end - 1].tolist()], dtype=torch.int64)
        y = torch.tensor(stream[pos:end], dtype=torch.int64)
        logits = model(x)[0]
        nll = F.cross_entropy(logits.double(), y, reduction="sum")
        total += nll.item()
        count += len(y)
    model.train()
    return total / count, count, len(wins)


def train_model(name, cfg, hp, train_stream, train_starts, held_stream, held_starts, bos):
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED + (0 if name == "llama" else 1))
    model = TinyCausalLM(cfg)
    model.init_weights(cfg["initializer_range"])
    nparams = count_params(model)
    log("[%s] params: %d" % (name, nparams))
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([
        {"params": decay, "weight_decay": hp["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ], lr=hp["lr"], betas=hp["betas"], eps=1e-8)
    # candidate window starts: verse starts with a full window available
    valid = train_starts[train_starts + CTX - 1 <= len(train_stream)]
    losses = []
    t0 = time.time()
    run = 0.0
    last_logged = 0
    for step in range(1, hp["steps"] + 1):
        if step <= hp["warmup"]:
            lr = hp["lr"] * step / hp["warmup"]
        else:
            prog = (step - hp["warmup"]) / max(1, hp["steps"] - hp["warmup"])
            lr = hp["min_lr"] + 0.5 * (hp["lr"] - hp["min_lr"]) * (1 + math.cos(math.pi * prog))
        for g in opt.param_groups:
            g["lr"] = lr
        st = rng.choice(valid, size=hp["batch"], replace=True)
        seq = np.stack([train_stream[s:s + CTX - 1] for s in st])
        x = torch.from_numpy(np.concatenate([np.full((hp["batch"], 1), bos), seq[:, :-1]], axis=1))
        y = torch.from_numpy(seq)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["grad_clip"])
        opt.step()
        run += loss.item()
        if step == 1 or step % hp["log_every"] == 0 or step == hp["steps"]:
            n = step - last_logged
            last_logged = step
            entry = {"step": step, "loss": round(loss.item(), 5), "mean_loss_since_last": round(run / n, 5),
                     "lr": round(lr, 7), "elapsed_s": round(time.time() - t0, 1)}
            losses.append(entry)
            log("[%s] step %4d loss %.4f (mean %.4f) lr %.2e %.0fs" % (
                name, step, entry["loss"], entry["mean_loss_since_last"], lr, time.time() - t0))
            run = 0.0
    train_time = time.time() - t0
    model.eval()
    nll, ntok, nwin = heldout_nll(model, held_stream, held_starts, bos)
    log("[%s] held-out NLL %.4f  ppl %.3f  (%d tokens, %d windows)" % (name, nll, math.exp(nll), ntok, nwin))
    # x tokens seen: steps*batch*(CTX-1) targets
    info = {
        "params": nparams,
        "train_time_s": round(train_time, 1),
        "tokens_seen": hp["steps"] * hp["batch"] * (CTX - 1),
        "log": losses,
        "final_train_loss": losses[-1]["loss"],
        "heldout": {"mean_nll": nll, "perplexity": math.exp(nll), "tokens": ntok, "windows": nwin},
    }
    return model, info


# --------------------------------------------------------------------------
# Saving and references
# --------------------------------------------------------------------------

def fp32_state(model):
    sd = model.state_dict()
    return {n: sd[n].detach().clone().contiguous().float() for n in hf_order(list(sd.keys()))}


def save_pt_zip(state, path):
    torch.save({n: t.clone().contiguous() for n, t in state.items()}, path)


def save_pt_legacy(state, path):
    sd = {}
    for n, t in state.items():
        if n == "lm_head.weight":
            # non-contiguous: a transposed view of the contiguous transpose, strides (1, rows)
            sd[n] = t.t().contiguous().t()
            assert not sd[n].is_contiguous() and sd[n].stride() == (1, t.shape[0])
        else:
            sd[n] = t.clone().contiguous()
    torch.save(sd, path, _use_new_zipfile_serialization=False)


def model_from_state(cfg, state):
    m = TinyCausalLM(cfg)
    m.load_state_dict({n: t.float() for n, t in state.items()}, strict=True)
    m.eval()
    return m


@torch.no_grad()
def compute_refs(model, sp):
    rows, entries = [], []
    off = 0
    for p in PROMPTS:
        ids = [sp.bos_id()] + sp.encode(p)
        logits = model(torch.tensor([ids]))[0].float()
        rows.append(logits.numpy().astype("<f4"))
        cur = list(ids)
        for _ in range(GREEDY_TOKENS):
            nxt = int(model(torch.tensor([cur]))[0, -1].argmax())
            cur.append(nxt)
        gen = cur[len(ids):]
        last = logits[-1]
        top = torch.topk(last, 5)
        entries.append({
            "prompt": p,
            "ids": ids,
            "n_positions": len(ids),
            "row_offset": off,
            "last_top5": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
            "greedy_ids": gen,
            "greedy_text": sp.decode(gen),
        })
        off += len(ids)
    return np.concatenate(rows, axis=0), entries


def write_refs(outdir, cfg, sp, state_fp32, state_bf16):
    m32 = model_from_state(cfg, state_fp32)
    mbf = model_from_state(cfg, {n: t.float() for n, t in state_bf16.items()})
    l32, e32 = compute_refs(m32, sp)
    lbf, ebf = compute_refs(mbf, sp)
    l32.tofile(os.path.join(outdir, "reference_logits.f32"))
    lbf.tofile(os.path.join(outdir, "reference_logits_bf16.f32"))
    for a, b in zip(e32, ebf):
        assert a["ids"] == b["ids"]
        a["bf16"] = {"last_top5": b["last_top5"], "greedy_ids": b["greedy_ids"], "greedy_text": b["greedy_text"]}
    ref = {
        "description": "Reference outputs of this model, computed with the plain-torch HF Llama/Qwen2 "
                       "re-implementation in testdata/gen/hf_common.py, in float32 on CPU.",
        "logits_files": {
            "reference_logits.f32": "from the float32 weights (pt-zip / pt-legacy)",
            "reference_logits_bf16.f32": "from the bf16-rounded weights (st-bf16 shards) upcast to float32, computed in float32",
        },
        "logits_layout": "little-endian float32, row-major [row][vocab]; rows are all positions of all prompts "
                         "concatenated in prompt order: prompt i occupies rows row_offset .. row_offset+n_positions-1, "
                         "row j = logits predicting the token after ids[j]; the last row of a prompt is its last-position logits",
        "vocab_size": cfg["vocab_size"],
        "total_rows": int(l32.shape[0]),
        "bos_prepended": True,
        "greedy": "argmax over the last position, %d steps, full recompute, no stop at EOS; 'bf16' entries use the bf16 weights" % GREEDY_TOKENS,
        "prompts": e32,
    }
    write_json(os.path.join(outdir, "reference.json"), ref)
    return l32, lbf


# --------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------

def bits_equal(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    it = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[a.dtype]
    return torch.equal(a.contiguous().view(it), b.contiguous().view(it))


def verify(outdir, cfg, sp, state, forms):
    names = set(state)
    loaded = {}
    if "pt-zip" in forms:
        p = os.path.join(outdir, "pt-zip", "pytorch_model.bin")
        assert zipfile.is_zipfile(p)
        sd = torch.load(p, map_location="cpu")
        assert set(sd) == names
        for n in names:
            assert sd[n].is_contiguous() and bits_equal(sd[n], state[n]), n
        loaded["pt-zip"] = sd
    if "pt-legacy" in forms:
        p = os.path.join(outdir, "pt-legacy", "pytorch_model.bin")
        assert not zipfile.is_zipfile(p)
        with open(p, "rb") as f:
            assert f.read(2) == b"\x80\x02"  # pickle protocol 2 (legacy magic number follows)
        sd = torch.load(p, map_location="cpu")
        assert set(sd) == names
        for n in names:
            assert bits_equal(sd[n], state[n]), n
        lm = sd["lm_head.weight"]
        assert not lm.is_contiguous() and lm.stride() == (1, lm.shape[0]), lm.stride()
        loaded["pt-legacy"] = sd
    for form, dt in (("st-bf16", torch.bfloat16), ("st-fp16", torch.float16)):
        if form not in forms:
            continue
        sd = load_sharded_safetensors(os.path.join(outdir, form))
        assert set(sd) == names
        for n in names:
            assert sd[n].dtype == dt and bits_equal(sd[n], state[n].to(dt)), (form, n)
        loaded[form] = sd
    for form in forms:
        for f in META_FILES:
            with open(os.path.join(outdir, form, f), "rb") as a, open(os.path.join(outdir, f), "rb") as b:
                assert a.read() == b.read(), (form, f)
    # references reproduce from reloaded weights
    ref = json.load(open(os.path.join(outdir, "reference.json")))
    V = cfg["vocab_size"]
    l32 = np.fromfile(os.path.join(outdir, "reference_logits.f32"), dtype="<f4").reshape(-1, V)
    lbf = np.fromfile(os.path.join(outdir, "reference_logits_bf16.f32"), dtype="<f4").reshape(-1, V)
    for form in forms:
        st = loaded[form]
        m = model_from_state(cfg, st)
        want = lbf if form == "st-bf16" else l32
        for e in ref["prompts"]:
            assert sp.encode(e["prompt"]) == e["ids"][1:]
            with torch.no_grad():
                got = m(torch.tensor([e["ids"]]))[0].numpy()
            w = want[e["row_offset"]:e["row_offset"] + e["n_positions"]]
            if form == "st-fp16":
                err = np.abs(got - l32[e["row_offset"]:e["row_offset"] + e["n_positions"]]).max()
                assert err < 0.05, (form, err)
            else:
                assert np.array_equal(got, w), (form, e["prompt"], np.abs(got - w).max())
    log("[verify] %s: all forms consistent, references reproduce (%s)" % (outdir, ", ".join(forms)))


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------

def write_training_report(outdir, name, cfg, hp, info, data_info, tok_info):
    doc = {
        "model": name,
        "config": {k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "vocab_size",
                                       "rope_theta", "rms_norm_eps", "tie_word_embeddings")},
        "hyperparameters": dict(hp, betas=list(hp["betas"]), context=CTX, seed=SEED, optimizer="AdamW",
                                schedule="linear warmup then cosine to min_lr",
                                batch_sampling="random windows of CTX-1 tokens starting at a training verse start, BOS prepended"),
        "data": data_info,
        "tokenizer": tok_info,
        "environment": {"torch": torch.__version__, "numpy": np.__version__,
                        "sentencepiece": spm.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "threads": torch.get_num_threads()},
    }
    doc.update(info)
    write_json(os.path.join(outdir, "training.json"), doc)
    ln_v = math.log(cfg["vocab_size"])
    lines = [
        "# Training record: %s" % os.path.basename(outdir),
        "",
        "Generated by `python3 testdata/gen/train_tiny.py` (see testdata/gen/README.md). "
        "Machine-readable copy: training.json.",
        "",
        "- Architecture: %s, %d parameters, hidden %d, intermediate %d, %d layers, %d heads / %d kv heads, "
        "rope_theta %g, rms_norm_eps %g, tie_word_embeddings %s" % (
            cfg["architectures"][0], info["params"], cfg["hidden_size"], cfg["intermediate_size"],
            cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
            cfg["rope_theta"], cfg["rms_norm_eps"], cfg["tie_word_embeddings"]),
        "- Corpus: King James Bible (public domain), %d verses; training = first %d verses (%d tokens), "
        "held-out = last %d verses (%s .. %s, %d tokens)" % (
            data_info["verses"], data_info["train_verses"], data_info["train_tokens"],
            data_info["heldout_verses"], data_info["heldout_first_ref"], data_info["heldout_last_ref"],
            data_info["heldout_tokens"]),
        "- Tokenizer: SentencePiece BPE, vocab %d (ln V = %.3f)" % (cfg["vocab_size"], ln_v),
        "- Optimizer: AdamW lr %g -> %g (warmup %d, cosine), betas %s, weight decay %g on matrices, "
        "grad clip %g, batch %d x %d tokens, %d steps, seed %d, 1 thread, %.0f s" % (
            hp["lr"], hp["min_lr"], hp["warmup"], tuple(hp["betas"]), hp["weight_decay"], hp["grad_clip"],
            hp["batch"], CTX, hp["steps"], SEED, info["train_time_s"]),
        "",
        "## Held-out evaluation",
        "",
        "Mean NLL per token over the held-out stream, partitioned into windows of at most %d tokens "
        "(BOS + up to %d scored tokens, split at verse boundaries; every token scored once):" % (CTX, CTX - 1),
        "",
        "| metric | value |",
        "| --- | --- |",
        "| held-out mean NLL (nats/token) | %.4f |" % info["heldout"]["mean_nll"],
        "| held-out perplexity | %.3f |" % info["heldout"]["perplexity"],
        "| held-out tokens / windows | %d / %d |" % (info["heldout"]["tokens"], info["heldout"]["windows"]),
        "| uniform baseline (ln V) | %.4f |" % ln_v,
        "",
        "## Training loss",
        "",
        "`loss` is the batch loss at that step; `mean` is the mean batch loss since the previous row.",
        "",
        "| step | loss | mean | lr | elapsed s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in info["log"]:
        lines.append("| %d | %.4f | %.4f | %.2e | %.1f |" % (e["step"], e["loss"], e["mean_loss_since_last"], e["lr"], e["elapsed_s"]))
    lines.append("")
    with open(os.path.join(outdir, "TRAINING.md"), "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------

def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=TESTDATA, help="testdata directory (default: the repo's)")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="scale training steps (for quick trials only)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    t_start = time.time()

    refs, verses = load_corpus()
    corpus_sha = sha256_bytes(("\n".join(verses) + "\n").encode("ascii"))
    n_train = int(round(len(verses) * (1 - HELDOUT_FRAC)))
    train_v, held_v = verses[:n_train], verses[n_train:]
    log("corpus: %d verses, train %d, held-out %d (%s..%s)" % (len(verses), n_train, len(held_v), refs[n_train], refs[-1]))

    llama_dir = os.path.join(args.out, "tiny-llama")
    qwen_dir = os.path.join(args.out, "tiny-qwen2")
    for d in (llama_dir, qwen_dir):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)

    tok_tmp = tempfile.mkdtemp(prefix="kvant-tok-")
    tok_path = os.path.join(tok_tmp, "tokenizer.model")
    sp = train_tokenizer(train_v, tok_path)
    assert sp.vocab_size() == VOCAB and sp.unk_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2 and sp.pad_id() == -1
    train_stream, train_starts = encode_stream(sp, train_v)
    held_stream, held_starts = encode_stream(sp, held_v)
    chars_train = sum(len(v) for v in train_v)
    log("tokens: train %d (%.2f chars/token), held-out %d" % (len(train_stream), chars_train / len(train_stream), len(held_stream)))
    with open(tok_path, "rb") as f:
        tok_sha = sha256_bytes(f.read())
    data_info = {
        "source": "Debian bible-kjv-text (/usr/lib/bible.data) decoded with `bible -f gen1:1-rev22:21` (bible-kjv)",
        "licence": "KJV text: public domain (copyright expired); bible-kjv-text packaging: unrestricted use",
        "corpus_sha256": corpus_sha,
        "verses": len(verses), "train_verses": n_train, "heldout_verses": len(held_v),
        "heldout_first_ref": refs[n_train], "heldout_last_ref": refs[-1],
        "train_tokens": int(len(train_stream)), "heldout_tokens": int(len(held_stream)),
        "stream_format": "each verse's SentencePiece ids followed by EOS (id 2), verses concatenated",
    }
    tok_info = {"type": "sentencepiece bpe", "vocab_size": VOCAB, "byte_fallback": True, "split_digits": True,
                "normalization": "identity", "add_dummy_prefix": True, "remove_extra_whitespaces": False,
                "trained_on": "training verses only", "sha256": tok_sha}

    models = [
        ("llama", LLAMA_CFG, llama_dir, ["pt-zip", "pt-legacy", "st-bf16", "st-fp16"]),
        ("qwen2", QWEN2_CFG, qwen_dir, ["pt-zip", "st-bf16"]),
    ]
    for name, cfg, outdir, forms in models:
        hp = dict(TRAIN[name])
        hp["steps"] = max(1, int(hp["steps"] * args.steps_scale))
        write_hf_meta(outdir, cfg, tok_path)
        model, info = train_model(name, cfg, hp, train_stream, train_starts, held_stream, held_starts, sp.bos_id())
        state = fp32_state(model)
        for form in forms:
            copy_meta(outdir, os.path.join(outdir, form))
        if "pt-zip" in forms:
            save_pt_zip(state, os.path.join(outdir, "pt-zip", "pytorch_model.bin"))
        if "pt-legacy" in forms:
            save_pt_legacy(state, os.path.join(outdir, "pt-legacy", "pytorch_model.bin"))
        if "st-bf16" in forms:
            save_sharded_safetensors(os.path.join(outdir, "st-bf16"), state, torch.bfloat16)
        if "st-fp16" in forms:
            save_sharded_safetensors(os.path.join(outdir, "st-fp16"), state, torch.float16)
        state_bf16 = {n: t.to(torch.bfloat16) for n, t in state.items()}
        write_refs(outdir, cfg, sp, state, state_bf16)
        write_training_report(outdir, name, cfg, hp, info, data_info, tok_info)
        verify(outdir, cfg, sp, state, forms)
        ref = json.load(open(os.path.join(outdir, "reference.json")))
        for e in ref["prompts"]:
            log("[%s] %r -> %r" % (name, e["prompt"], e["greedy_text"]))
    shutil.rmtree(tok_tmp)
    log("done in %.0f s" % (time.time() - t_start))


if __name__ == "__main__":
    main()
