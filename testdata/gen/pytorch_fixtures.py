#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures in testdata/pytorch/.

Every valid fixture is written by genuine torch.save (Debian python3-torch
1.13; run with the interpreter that has it, e.g.
`/usr/bin/python3 testdata/gen/pytorch_fixtures.py` from the repository
root). What torch itself reads back with torch.load goes into expected.json,
so the Go tests compare against torch, not against numbers typed by hand.

  basic.pt            zip; f32, f16, bf16, f64, i64, i32, i16, i8, u8, bool
                      and a 0-dim tensor, in a plain dict
  basic_p4.pt         the same with pickle_protocol=4 (STACK_GLOBAL, MEMOIZE)
  views.pt            zip; views sharing storages: a transposed tensor, a row
                      slice (storage offset), a column (offset and stride), a
                      strided slice, a 3-d permutation, an expanded tensor
                      (stride 0) and two tensors cut from one storage
  nested.pt           zip; llama2.c train.py layout: {model: OrderedDict
                      state dict, model_args, optimizer (real AdamW state after
                      one step), iter_num, best_val_loss, config}
  odd-root.Name_42.pt zip whose archive root folder is "odd-root.Name_42"
  *_legacy.pt         basic, views and nested written with
                      _use_new_zipfile_serialization=False
  oob_offset.pt       torch.save of a tensor view whose storage offset plus
                      size runs past its 4-element storage
  oob_stride.pt       likewise through its strides
  compressed.pt       basic.pt re-zipped with deflate-compressed data entries
  short_entry.pt      basic.pt with the f32 storage entry cut to half its size
  evil_global.pt      zip whose data.pkl is hand-written: GLOBAL 'os system'
                      called on 'echo pwned' (never unpickle it in Python)
  evil_stack_global.pt  the same through protocol 4 STACK_GLOBAL posix.system
  evil_legacy.pt      legacy stream whose main pickle calls builtins.eval
  expected.json       per loadable fixture: tensors (name, dtype, shape,
                      flattened values as numbers, in state-dict order) and
                      the args dict, all from torch.load

The output is deterministic (fixed seed), except that the legacy files'
storage keys are Python object ids (str(id(storage)), as torch writes them),
so those few bytes change from run to run; the values do not.
"""
import collections
import io
import json
import os
import pickle
import shutil
import struct
import tempfile
import zipfile

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pytorch")

DTYPE_NAMES = {
    torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
    torch.float64: "f64", torch.int64: "i64", torch.int32: "i32",
    torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8", torch.bool: "bool",
}


def basic():
    g = torch.Generator().manual_seed(1)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(2, 5, generator=g).half(),
        "bf16": torch.randn(4, 3, generator=g).bfloat16(),
        "f64": torch.randn(3, generator=g).double(),
        "i64": torch.arange(-3, 3, dtype=torch.int64) * 1000000007,
        "i32": torch.tensor([-2147483648, -1, 0, 2147483647], dtype=torch.int32),
        "i16": torch.tensor([[-32768, 7], [300, 32767]], dtype=torch.int16),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "step": 7,  # not a tensor: skipped
    }


def views():
    g = torch.Generator().manual_seed(2)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    cube = torch.randn(2, 3, 4, generator=g)
    flat = torch.randn(10, generator=g).half()
    d = collections.OrderedDict()
    d["base"] = base
    d["transposed"] = base.t()             # stride (1, 6)
    d["rows"] = base[1:3]                  # contiguous, storage offset 6
    d["column"] = base[:, 2]               # stride (6,), offset 2
    d["strided"] = base[1:, ::2]           # stride (6, 2), offset 6
    d["permuted"] = cube.permute(2, 0, 1)  # 3-d, no unit stride innermost
    d["expanded"] = torch.tensor([1.5, -2.0]).expand(3, 2)  # stride (0, 1)
    d["shared_a"] = flat[:4]               # two tensors, one storage
    d["shared_b"] = flat[4:].view(2, 3)
    return d


class TinyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.Module()
        self.attention.wq = nn.Linear(8, 8, bias=False)
        self.attention.wk = nn.Linear(8, 4, bias=False)
        self.attention_norm = nn.LayerNorm(8)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(16, 8)
        self.layers = nn.ModuleList([TinyBlock()])
        self.output = nn.Linear(8, 16, bias=False)
        self.output.weight = self.tok_embeddings.weight  # shared, as in llama2.c


def nested():
    torch.manual_seed(3)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    loss = model.output(model.tok_embeddings(torch.tensor([1, 2]))).sum()
    loss.backward()
    opt.step()
    model_args = dict(dim=8, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=16,
                      multiple_of=4, max_seq_len=32, dropout=0.0, norm_eps=1e-5,
                      name="tiny", flag=True, nothing=None, sizes=[1, 2, 3], pair=(4, 5))
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "model_args": model_args,
        "iter_num": 5,
        "best_val_loss": torch.tensor(1.5),
        "config": {"dtype": "float16", "compile": False},
    }


class BadView:
    """Pickles as a tensor whose view runs past its storage: the reduce
    tuple a real tensor uses, with the offset, size and stride given."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


def to_json_value(v):
    if isinstance(v, (list, tuple)):
        return [to_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    return v


def describe(path):
    """What torch.load returns, reduced to what the Go reader must match."""
    obj = torch.load(path, map_location="cpu")
    state = obj
    for key in ("model", "state_dict", "model_state_dict", "module"):
        if isinstance(obj.get(key), dict):
            state = obj[key]
            break
    tensors = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            continue
        tensors.append({
            "name": name,
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "values": t.reshape(-1).tolist() if t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)
            else t.double().reshape(-1).tolist(),
        })
    out = {"tensors": tensors}
    for key in ("model_args", "args", "config"):
        if key in obj:
            out["args"] = to_json_value(obj[key])
            break
    return out


def rezip(src, dst, change):
    """Copies a zip, letting change(name, data) return new data and method."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data, method = change(info.filename, zin.read(info.filename))
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=method)


def write_evil_zip(path, pkl):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in (("archive/data.pkl", pkl), ("archive/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    p = lambda name: os.path.join(OUT, name)

    torch.save(basic(), p("basic.pt"))
    torch.save(basic(), p("basic_p4.pt"), pickle_protocol=4)
    torch.save(views(), p("views.pt"))
    torch.save(nested(), p("nested.pt"))
    torch.save(basic(), p("basic_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(views(), p("views_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(nested(), p("nested_legacy.pt"), _use_new_zipfile_serialization=False)
    # torch names the archive root after the file, so this one gets an
    # unusual root folder without any editing.
    torch.save(views(), p("odd-root.Name_42.pt"))

    expected = {}
    for name in sorted(os.listdir(OUT)):
        expected[name] = describe(p(name))

    torch.save({"bad": BadView(torch.zeros(4).storage(), 2, (4,), (1,))}, p("oob_offset.pt"))
    torch.save({"bad": BadView(torch.zeros(6).storage(), 0, (2, 3), (3, 2))}, p("oob_stride.pt"))

    rezip(p("basic.pt"), p("compressed.pt"),
          lambda n, d: (d, zipfile.ZIP_DEFLATED if "/data/" in n else zipfile.ZIP_STORED))
    f32_key = None
    with zipfile.ZipFile(p("basic.pt")) as z:
        # The f32 tensor's storage is the first one the pickle names.
        for op, arg, _ in __import__("pickletools").genops(z.read("basic/data.pkl")):
            if op.name == "BINUNICODE" and arg.isdigit():
                f32_key = arg
                break
    rezip(p("basic.pt"), p("short_entry.pt"),
          lambda n, d: (d[: len(d) // 2] if n == "basic/data/" + f32_key else d, zipfile.ZIP_STORED))

    # Hand-written pickles that must never be run: os.system('echo pwned').
    evil = b"\x80\x02" + b"cos\nsystem\n" + b"X\x0a\x00\x00\x00echo pwned" + b"\x85R."
    write_evil_zip(p("evil_global.pt"), evil)
    body4 = b"\x8c\x05posix\x94" + b"\x8c\x06system\x94" + b"\x93" + b"\x8c\x0aecho pwned\x94" + b"\x85\x94R\x94."
    evil4 = b"\x80\x04\x95" + struct.pack("<Q", len(body4)) + body4
    write_evil_zip(p("evil_stack_global.pt"), evil4)
    legacy_head = (pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2)
                   + pickle.dumps(dict(protocol_version=1001, little_endian=True,
                                       type_sizes=dict(short=2, int=4, long=4)), protocol=2))
    evil_main = b"\x80\x02" + b"cbuiltins\neval\n" + b"X\x0e\x00\x00\x00print('pwned')" + b"\x85R."
    with open(p("evil_legacy.pt"), "wb") as f:
        f.write(legacy_head + evil_main + pickle.dumps([], protocol=2))

    with open(p("expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(p(n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, torch {torch.__version__}")


if __name__ == "__main__":
    main()
