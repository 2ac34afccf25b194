"""Checkpoint schemes that need the other kernel families (extreme/packing, gguf, calib, int8).

Each test skips, saying what is missing, until that family is in the build; after
the merge they run. The rest of the checkpoint tests are in test_checkpoint.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import lowbit
from lowbit import checkpoint as ck
from lowbit.cli import main
from lowbit.io import safetensors as st

from test_checkpoint import assert_qtensor_equal


@pytest.fixture
def model(tmp_path, rng):
    t = {
        "embed.weight": rng.standard_normal((40, 256)).astype(np.float32),
        "l0.q.weight": rng.standard_normal((8, 256)).astype(np.float32),
        "l0.up.weight": (rng.standard_normal((16, 512)) * 0.05).astype(np.float16),
        "l0.odd.weight": rng.standard_normal((6, 100)).astype(np.float32),   # row not a multiple of a GGUF block
        "l0.norm.weight": np.ones(256, np.float32),
        "position_ids": np.arange(8, dtype=np.int64).reshape(1, 8),
    }
    p = tmp_path / "m.safetensors"
    st.write(p, t)
    return str(p), t


@pytest.mark.parametrize("scheme, method", [("ternary", "absmean"), ("ternary:twn", "twn"),
                                            ("ternary:threshold", "threshold")])
def test_ternary_checkpoint(model, tmp_path, scheme, method):
    path, t = model
    out = tmp_path / "o.safetensors"
    rep = ck.quantize_checkpoint(path, out, scheme)
    back = lowbit.load(out)
    for n in ("l0.q.weight", "l0.up.weight", "l0.odd.weight"):
        qt = back[n]
        assert qt.scheme == "ternary" and qt.packed is not None
        expect = lowbit.ternarize(t[n].astype(np.float32), method=method)
        np.testing.assert_array_equal(qt.unpacked_codes(), expect.codes)
        np.testing.assert_array_equal(qt.dequantize(), expect.dequantize())
    row = {r["name"]: r for r in rep.rows}["l0.q.weight"]
    assert row["bits_per_weight"] == pytest.approx(2 + 32 / (8 * 256))   # 2-bit codes + one float32 scale


@pytest.mark.parametrize("scheme, method", [("binary", "sign"), ("binary:bitnet", "bitnet")])
def test_binary_checkpoint(model, tmp_path, scheme, method):
    path, t = model
    out = tmp_path / "o.safetensors"
    rep = ck.quantize_checkpoint(path, out, scheme, granularity="channel")
    qt = lowbit.load(out)["l0.q.weight"]
    expect = lowbit.binarize(t["l0.q.weight"], method=method, axis=0)
    np.testing.assert_array_equal(qt.dequantize(), expect.dequantize())
    row = {r["name"]: r for r in rep.rows}["l0.q.weight"]
    assert row["bits_per_weight"] == pytest.approx(1 + 32 / 256)


@pytest.mark.parametrize("scheme, bits", [("int4", 4), ("uint4", 4), ("int2", 2), ("uint3", 3)])
def test_sub_byte_codes_are_packed(model, tmp_path, scheme, bits):
    if not callable(getattr(lowbit.QTensor, "pack", None)):
        pytest.skip("QTensor.pack (the packing family) is not in this build")
    path, t = model
    out = tmp_path / "o.safetensors"
    rep = ck.quantize_checkpoint(path, out, scheme, granularity="group:128")
    qt = lowbit.load(out)["l0.q.weight"]
    assert qt.packed is not None
    expect = lowbit.quantize(t["l0.q.weight"], bits, scheme="absmax" if scheme.startswith("int") else "minmax",
                             group_size=128)
    assert_qtensor_equal(qt.unpack(), expect)
    row = {r["name"]: r for r in rep.rows}["l0.q.weight"]
    zp = 0 if scheme.startswith("int") else 32
    assert row["bits_per_weight"] == pytest.approx(bits + (32 + zp) / 128)


@pytest.mark.parametrize("fmt", ["Q8_0", "Q4_0", "TQ2_0"])
def test_gguf_checkpoint(model, tmp_path, fmt, capsys):
    gguf = pytest.importorskip("gguf")
    path, t = model
    out = tmp_path / "o.gguf"
    assert main(["quantize", path, str(out), "--scheme", f"gguf:{fmt}", "--report", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    assert "dropped" in text     # position_ids (I64) cannot go into the GGUF writer
    r = gguf.GGUFReader(str(out))
    got = {tt.name: tt for tt in r.tensors}
    assert "position_ids" not in got
    bs = 256 if fmt.startswith("TQ") else 32
    for n in ("l0.q.weight", "l0.up.weight"):
        if t[n].shape[-1] % bs:
            continue
        blob = lowbit.gguf.quantize(t[n].astype(np.float32), fmt)
        assert got[n].tensor_type == gguf.GGMLQuantizationType[fmt]
        np.testing.assert_array_equal(np.asarray(got[n].data).reshape(-1).view(np.uint8), blob.reshape(-1))
    # rows that the block cannot hold stay float, and the report says why
    assert got["l0.odd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    import json
    rows = {x["name"]: x for x in json.loads((tmp_path / "r.json").read_text())["tensors"]}
    assert "not a multiple" in rows["l0.odd.weight"]["note"]
    assert rows["position_ids"]["action"] == "dropped"


def test_gguf_rejects_granularity(model, tmp_path):
    with pytest.raises(ck.CheckpointError, match="fixed block layout"):
        ck.quantize_checkpoint(model[0], tmp_path / "o.gguf", "gguf:Q8_0", granularity="channel")


@pytest.mark.parametrize("scheme, bits, kind, gran, kw", [
    ("nf4", 4, "nf4", "group:64", {"group_size": 64}),
    ("kmeans4", 4, "kmeans", "tensor", {}),
    ("kmeans3", 3, "kmeans", "channel", {"axis": 0}),
])
def test_codebook_checkpoint(model, tmp_path, scheme, bits, kind, gran, kw):
    path, t = model
    out = tmp_path / "o.safetensors"
    ck.quantize_checkpoint(path, out, scheme, granularity=gran)
    qt = lowbit.load(out)["l0.q.weight"]
    expect = lowbit.quantize(t["l0.q.weight"], bits, scheme=kind, **kw)
    np.testing.assert_array_equal(qt.dequantize(), expect.dequantize())


@pytest.mark.parametrize("clip, method, param", [("percentile:99.5", "percentile", 99.5), ("mse", "mse", None),
                                                 ("kl", "kl", None)])
def test_calibrated_clip(model, tmp_path, clip, method, param):
    path, t = model
    out = tmp_path / "o.safetensors"
    ck.quantize_checkpoint(path, out, "int8", clip=clip)
    qt = lowbit.load(out)["l0.q.weight"]
    assert_qtensor_equal(qt, lowbit.quantize(t["l0.q.weight"], 8, axis=0, clip=method, clip_param=param))


def test_plot_ternary(model, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert main(["plot", model[0], "--tensor", "l0.q.weight", "--scheme", "ternary", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
