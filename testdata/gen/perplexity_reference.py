#!/usr/bin/env python3
"""Torch reference perplexities for kvant's eval package.

Writes testdata/tiny-llama/heldout_kjv.txt and, for tiny-llama and tiny-qwen2:
  heldout_kjv.txt             a held-out KJV slice (the verses right after the
                              training split, Col4:5 onward, joined by
                              spaces, at most 48 KB): the evaluation text
  perplexity_reference.json   perplexity of the fp32 model (pt-zip) on that
                              text with the two windowings kvant implements

The model is hf_common.TinyCausalLM, an independent torch implementation of
transformers' Llama/Qwen2; the tokenizer is the Python sentencepiece library.
The windowing is written here from its definitions (docs/validation.md):

  llama.cpp  the text tokenized once with one BOS first; floor(n/ctx)
             consecutive chunks of ctx tokens, the first token of each
             replaced by BOS; in each chunk the logits at positions
             ctx/2 .. ctx-2 are scored against the next token.
  stride     Hugging Face's guide: windows [b, min(b+ctx, n)) for
             b = 0, stride, ...; the first window scores all tokens but its
             first, later ones the tokens from the previous window's end on;
             stop after the window that reaches n. No BOS replacement.

NLLs are log-softmax in float64 of the float32 logits. The standard error is
llama-perplexity's: sqrt((mean(x^2) - mean(x)^2)/(N-1)), PPL error = PPL * it.

Run from the repo root:  /usr/bin/python3 testdata/gen/perplexity_reference.py
Needs Debian's python3-torch, python3-sentencepiece, python3-numpy and
bible-kjv (the `bible` program with bible-kjv-text). Deterministic: 1 thread.
"""

import os
import sys

if os.environ.get("OMP_NUM_THREADS") != "1":
    os.environ["OMP_NUM_THREADS"] = "1"
    os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402

import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_common import TinyCausalLM  # noqa: E402

torch.set_num_threads(1)

HELDOUT_FRAC = 0.05  # as train_tiny.py
MAX_BYTES = 48 * 1024
SETTINGS = [
    {"mode": "llama.cpp", "context": 128, "stride": 0},
    {"mode": "llama.cpp", "context": 64, "stride": 0},
    {"mode": "stride", "context": 128, "stride": 64},
    {"mode": "stride", "context": 100, "stride": 37},
]


def heldout_text():
    out = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, check=True).stdout.decode("ascii")
    verses = [line.split(" ", 1)[1].strip() for line in out.splitlines() if line.strip()]
    assert len(verses) == 31102, len(verses)
    n_train = int(round(len(verses) * (1 - HELDOUT_FRAC)))
    lines, size = [], 0
    for v in verses[n_train:]:
        if size + len(v) + 1 > MAX_BYTES:
            break
        lines.append(v)
        size += len(v) + 1
    # Verses joined by single spaces, no newline: the model was trained on
    # verses separated by EOS and never saw a newline byte, which would
    # otherwise dominate the loss.
    return " ".join(lines)


def windows(n, ctx, stride):
    """(start, length, first scored position, replace first with BOS)."""
    if stride == 0:
        assert n >= 2 * ctx
        return [(i * ctx, ctx, ctx // 2, True) for i in range(n // ctx)]
    ws, prev_end, b = [], 0, 0
    while True:
        end = min(b + ctx, n)
        ws.append((b, end - b, max(prev_end - b - 1, 0), False))
        prev_end = end
        if end == n:
            return ws
        b += stride


@torch.no_grad()
def evaluate(model, ids, bos, ctx, stride):
    nlls = []
    for start, length, score, rep in windows(len(ids), ctx, stride):
        w = list(ids[start:start + length])
        if rep:
            w[0] = bos
        logits = model(torch.tensor([w]))[0].double()  # float32 logits, widened
        logp = torch.log_softmax(logits, dim=-1)
        for p in range(score, length - 1):
            nlls.append(-logp[p, ids[start + p + 1]].item())
    n = len(nlls)
    mean = sum(nlls) / n
    var = sum(x * x for x in nlls) / n - mean * mean
    se = math.sqrt(var / (n - 1))
    ppl = math.exp(mean)
    return {"windows": len(windows(len(ids), ctx, stride)), "scored_tokens": n,
            "mean_nll": mean, "mean_nll_stderr": se, "ppl": ppl, "ppl_stderr": ppl * se}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    text = heldout_text()
    for name in ("tiny-llama", "tiny-qwen2"):
        d = os.path.join(root, name)
        if name == "tiny-llama":  # one copy of the text, used by both models
            with open(os.path.join(d, "heldout_kjv.txt"), "w") as f:
                f.write(text)
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        model = TinyCausalLM(cfg)
        sd = torch.load(os.path.join(d, "pt-zip", "pytorch_model.bin"), map_location="cpu")
        if cfg.get("tie_word_embeddings"):
            sd.pop("lm_head.weight", None)
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        model.eval()
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        ids = [sp.bos_id()] + sp.encode(text)
        ref = {
            "generator": "testdata/gen/perplexity_reference.py",
            "model": name + "/pt-zip (fp32)",
            "text": "testdata/tiny-llama/heldout_kjv.txt",
            "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "text_bytes": len(text.encode()),
            "text_tokens": len(ids),
            "token_ids_sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest(),
            "torch": torch.__version__,
            "results": [],
        }
        for s in SETTINGS:
            r = dict(s)
            r.update(evaluate(model, ids, sp.bos_id(), s["context"], s["stride"]))
            ref["results"].append(r)
            print(name, r, flush=True)
        with open(os.path.join(d, "perplexity_reference.json"), "w") as f:
            json.dump(ref, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
