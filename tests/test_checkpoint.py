"""Checkpoints: our safetensors parser on hostile files, the atomic writer, quantize_checkpoint,
lowbit.load/save, the CLI (quantize, inspect, plot, demo) and the report.

Everything here runs on what main has (the affine schemes). Tests that need the
other families' schemes are in test_checkpoint_schemes.py.
"""
from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import lowbit
from lowbit import checkpoint as ck
from lowbit.cli import main
from lowbit.io import safetensors as st
from lowbit._progress import Progress

from conftest import assert_qtensor_equal as _assert_qtensor_equal


def assert_qtensor_equal(a, b):
    """Bit-identical, where a checkpoint may omit an all-zero zero point (symmetric schemes)
    and stores sub-byte codes bit-packed when the build can pack."""
    import dataclasses
    a, b = [x.unpack() if x.packed is not None else x for x in (a, b)]
    if (a.zero_point is None) != (b.zero_point is None):
        a, b = [x if x.zero_point is not None else dataclasses.replace(x, zero_point=np.zeros(x.scale.shape, np.int32))
                for x in (a, b)]
    _assert_qtensor_equal(a, b)


# ---------------------------------------------------------------------------
# helpers

def raw_file(path, header: dict, data: bytes = b"", *, header_len=None) -> str:
    hb = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb) if header_len is None else header_len))
        f.write(hb)
        f.write(data)
    return str(path)


def small_model(rng) -> dict:
    return {
        "embed.weight": rng.standard_normal((50, 16)).astype(np.float32),
        "layers.0.attn.q.weight": rng.standard_normal((24, 16)).astype(np.float32),
        "layers.0.attn.q.bias": rng.standard_normal(24).astype(np.float32),
        "layers.0.mlp.up.weight": rng.standard_normal((33, 16)).astype(np.float16),
        "layers.0.mlp.down.weight": rng.standard_normal((16, 33)).astype(np.float64),
        "layers.0.norm.weight": np.ones(16, np.float32),
        "position_ids": np.arange(10, dtype=np.int64).reshape(1, 10),
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "empty.weight": np.zeros((0, 4), np.float32),
    }


@pytest.fixture
def model_file(tmp_path, rng):
    t = small_model(rng)
    p = tmp_path / "model.safetensors"
    st.write(p, t, metadata={"format": "pt"})
    return str(p), t


def no_temps(folder) -> bool:
    return not [n for n in os.listdir(folder) if "lowbit-tmp" in n or "lowbit-spool" in n or n.endswith("-tmp")]


# ---------------------------------------------------------------------------
# safetensors: round trips

def test_write_read_roundtrip_all_dtypes(tmp_path, rng):
    t = {"f32": rng.standard_normal((3, 5)).astype(np.float32), "f16": np.arange(7, dtype=np.float16),
         "f64": np.array([1.5, -2.25]), "i8": np.array([-128, 127], np.int8), "u8": np.arange(5, dtype=np.uint8),
         "i16": np.array([-3], np.int16), "i32": np.array([[1, 2], [3, 4]], np.int32),
         "i64": np.array([2 ** 40], np.int64), "b": np.array([True, False]), "scalar": np.float32(3.0),
         "empty": np.zeros((0, 3), np.float32), "big_endian": np.array([1.0, 2.0], ">f4"),
         "noncontig": rng.standard_normal((4, 6)).astype(np.float32)[:, ::2]}
    p = tmp_path / "a.safetensors"
    st.write(p, t, metadata={"k": "v"})
    with st.SafetensorsFile(p) as f:
        assert f.metadata == {"k": "v"}
        assert f.keys() == list(t)
        for k, v in t.items():
            got = f.get(k)
            assert got.shape == np.shape(v)
            np.testing.assert_array_equal(got, v)
        assert f.info("f32").dtype == "F32" and f.info("b").dtype == "BOOL"
        assert (f.data_offset % 8) == 0           # header padded so data starts aligned
        assert not f.get("f32").flags.writeable   # a read-only view of the map


def test_bf16_is_widened_exactly(tmp_path):
    vals = np.array([1.0, -2.5, 3.140625, 0.0, -0.0, 65280.0], np.float32)
    bits = (vals.view(np.uint32) >> 16).astype(np.uint16)
    p = tmp_path / "bf.safetensors"
    st.write(p, {"w": st.RawTensor("BF16", (2, 3), bits.view(np.uint8))})
    with st.SafetensorsFile(p) as f:
        got = f.get("w")
        assert got.dtype == np.float32 and got.shape == (2, 3)
        np.testing.assert_array_equal(got.reshape(-1).view(np.uint32), vals.view(np.uint32))
        np.testing.assert_array_equal(f.raw("w"), bits.view(np.uint8))


def test_unaligned_tensor_is_copied_aligned(tmp_path):
    # an int8 tensor of odd length followed by float32: the float32 data is misaligned in the file
    a = np.arange(3, dtype=np.int8)
    b = np.array([1.5, 2.5], np.float32)
    hdr = {"a": {"dtype": "I8", "shape": [3], "data_offsets": [0, 3]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]}}
    p = raw_file(tmp_path / "u.safetensors", hdr, a.tobytes() + b.tobytes())
    with st.SafetensorsFile(p) as f:
        got = f.get("b")
        assert got.flags.aligned
        np.testing.assert_array_equal(got, b)


def test_interop_with_safetensors_package(tmp_path, rng):
    stnp = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed")
    t = {"w": rng.standard_normal((7, 9)).astype(np.float32), "i": np.arange(5, dtype=np.int64),
         "h": rng.standard_normal(3).astype(np.float16)}
    ours = tmp_path / "ours.safetensors"
    st.write(ours, t, metadata={"a": "b"})
    theirs = stnp.load_file(str(ours))
    for k in t:
        np.testing.assert_array_equal(theirs[k], t[k])
    p2 = tmp_path / "theirs.safetensors"
    stnp.save_file(t, str(p2), metadata={"x": "y"})
    with st.SafetensorsFile(p2) as f:
        assert f.metadata == {"x": "y"}
        for k in t:
            np.testing.assert_array_equal(f.get(k), t[k])


# ---------------------------------------------------------------------------
# safetensors: hostile files

ENT = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("case, header, data, header_len, message", [
    ("too short", None, b"", None, "too short"),
    ("header length past end", {"a": ENT}, b"\0" * 8, 10_000, "runs past the end"),
    ("absurd header length", {"a": ENT}, b"\0" * 8, 2 ** 63, "implausible"),
    ("truncated data", {"a": ENT}, b"\0" * 5, None, "run past the end"),
    ("overlap", {"a": ENT, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, None,
     "overlap"),
    ("unknown dtype", {"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None,
     "unknown dtype 'F33'"),
    ("fp8 unsupported", {"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 2, None,
     "not supported"),
    ("huge shape", {"a": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 8]}}, b"\0" * 8, None,
     "needs 4835703278458516698824704 bytes"),
    ("huge offsets", {"a": {"dtype": "F32", "shape": [2 ** 60], "data_offsets": [0, 2 ** 62]}}, b"\0" * 8, None,
     "run past the end"),
    ("size mismatch", {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs 12"),
    ("negative dim", {"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None,
     "non-negative"),
    ("bool dim", {"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\0" * 8, None,
     "non-negative"),
    ("reversed offsets", {"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8, None,
     "begin <= end"),
    ("offsets not a pair", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, None,
     "data_offsets must be"),
    ("entry not object", {"a": 3}, b"", None, "not an object"),
    ("too many dims", {"a": {"dtype": "F32", "shape": [1] * 40, "data_offsets": [0, 4]}}, b"\0" * 4, None,
     "dimensions"),
    ("metadata not str", {"__metadata__": {"a": 1}}, b"", None, "__metadata__"),
    ("header list", [1, 2], b"", None, "not a JSON object"),
])
def test_hostile_files_are_refused(tmp_path, case, header, data, header_len, message):
    p = tmp_path / "bad.safetensors"
    if header is None:
        p.write_bytes(b"\x01\x02\x03")
    else:
        raw_file(p, header, data, header_len=header_len)
    with pytest.raises(st.SafetensorsError, match=message) as ei:
        st.SafetensorsFile(p)
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


@pytest.mark.parametrize("blob, message", [
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', "duplicate key"),
    (b'{"a": NaN}', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"not json at all", "not a JSON object"),
    (b"{" * 100000, "not valid JSON"),
], ids=["duplicate", "nan", "not-utf8", "not-json", "deep-nesting"])
def test_hostile_headers(tmp_path, blob, message):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 4)
    with pytest.raises(st.SafetensorsError, match=message):
        st.SafetensorsFile(p)


@pytest.mark.parametrize("blob, message", [(b"GGUF\x03\0\0\0" + b"\0" * 16, "GGUF file"),
                                           (b"PK\x03\x04" + b"\0" * 16, "never unpickles"),
                                           (b"\x80\x02}q\x00." + b"\0" * 16, "never unpickles")],
                         ids=["gguf", "torch-zip", "pickle"])
def test_other_formats_are_named(tmp_path, blob, message):
    p = tmp_path / "model.bin"
    p.write_bytes(blob)
    with pytest.raises(st.SafetensorsError, match=message):
        st.SafetensorsFile(p)


def test_random_corruption_never_crashes(tmp_path, rng):
    """Flip bytes of a valid file: every result is a clean SafetensorsError or a valid read."""
    good = tmp_path / "g.safetensors"
    st.write(good, {"w": rng.standard_normal((4, 4)).astype(np.float32), "b": np.arange(3, dtype=np.int8)})
    blob = bytearray(good.read_bytes())
    for trial in range(300):
        b = bytearray(blob)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        if trial % 3 == 0:
            b = b[:int(rng.integers(0, len(b)))]
        p = tmp_path / f"c{trial}.safetensors"
        p.write_bytes(bytes(b))
        try:
            with st.SafetensorsFile(p) as f:
                for k in f.keys():
                    f.get(k)
        except st.SafetensorsError:
            pass


def test_empty_checkpoint(tmp_path):
    p = raw_file(tmp_path / "e.safetensors", {})
    with st.SafetensorsFile(p) as f:
        assert f.keys() == []
    with pytest.raises(ck.CheckpointError, match="no tensor selected"):
        ck.quantize_checkpoint(p, tmp_path / "o.safetensors")


# ---------------------------------------------------------------------------
# quantize_checkpoint

def test_default_selection_and_exact_codes(model_file, tmp_path):
    path, t = model_file
    out = tmp_path / "q.safetensors"
    rep = ck.quantize_checkpoint(path, out, "int8")
    back = lowbit.load(out)
    assert list(back) == list(t)
    quantized = {n for n, v in back.items() if isinstance(v, lowbit.QTensor)}
    assert quantized == {"layers.0.attn.q.weight", "layers.0.mlp.up.weight", "layers.0.mlp.down.weight"}
    for n in quantized:
        expect = lowbit.quantize(t[n], 8, scheme="absmax", axis=0)
        assert_qtensor_equal(back[n], expect)
    for n in set(t) - quantized:
        assert back[n].dtype == t[n].dtype
        np.testing.assert_array_equal(back[n], t[n])
    rows = {r["name"]: r for r in rep.rows}
    assert rows["embed.weight"]["action"] == "kept" and rows["layers.0.norm.weight"]["action"] == "kept"
    assert rows["layers.0.mlp.up.weight"]["bytes_before"] == 33 * 16 * 2


def test_include_exclude_and_granularity(model_file, tmp_path):
    path, t = model_file
    out = tmp_path / "q.safetensors"
    ck.quantize_checkpoint(path, out, "uint4", granularity="group:5", include=["embed.*", "conv.*"],
                           exclude=["*.down.*"])
    back = lowbit.load(out)
    assert isinstance(back["embed.weight"], lowbit.QTensor)
    assert isinstance(back["conv.weight"], lowbit.QTensor)
    assert not isinstance(back["layers.0.mlp.down.weight"], lowbit.QTensor)
    for n in ("embed.weight", "conv.weight", "layers.0.attn.q.weight"):
        assert_qtensor_equal(back[n], lowbit.quantize(t[n], 4, scheme="minmax", group_size=5))
        assert back[n].zero_point is not None


@pytest.mark.parametrize("gran, kw", [("tensor", {}), ("channel", {"axis": 0}), ("group:7", {"group_size": 7}),
                                      ("group", {"group_size": 128})])
def test_granularities(model_file, tmp_path, gran, kw):
    path, t = model_file
    out = tmp_path / "q.safetensors"
    ck.quantize_checkpoint(path, out, "int3", granularity=gran)
    got = lowbit.load(out)["layers.0.attn.q.weight"]
    assert_qtensor_equal(got, lowbit.quantize(t["layers.0.attn.q.weight"], 3, **kw))


def test_report_numbers_and_json(model_file, tmp_path):
    path, t = model_file
    out, rj = tmp_path / "q.safetensors", tmp_path / "r.json"
    rep = ck.quantize_checkpoint(path, out, "int4", granularity="channel", report=rj)
    n = "layers.0.mlp.down.weight"
    w = t[n].astype(np.float32)
    w_hat = lowbit.quantize(w, 4, axis=0).dequantize()
    d = (w_hat.astype(np.float64) - w)
    row = {r["name"]: r for r in rep.rows}[n]
    assert row["mse"] == pytest.approx(np.mean(d * d), rel=1e-9)
    assert row["max_abs_err"] == pytest.approx(np.abs(d).max(), rel=1e-6)
    assert row["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(w.astype(np.float64) ** 2) / np.sum(d * d)), rel=1e-9)
    packed = lowbit.load(out)[n].packed is not None
    # codes (4-bit packed, two per byte, rows padded, when the build packs) + float32 scales;
    # the all-zero zero points are not stored
    assert row["bytes_after"] == 16 * (17 if packed else 33) + 16 * 4
    with st.SafetensorsFile(out) as f:
        assert f"{n}:zero_point" not in f and f"{n}:scale" in f
    assert row["bits_per_weight"] == pytest.approx(8 * row["bytes_after"] / (16 * 33))
    j = json.loads(rj.read_text())
    assert j["scheme"] == "int4" and j["options"]["granularity"] == "channel"
    assert {r["name"] for r in j["tensors"]} == set(t)
    tot = j["totals"]
    assert tot["quantized"] == 3 and tot["bytes_before"] == sum(v.nbytes for v in t.values())
    assert tot["bytes_after"] == os.path.getsize(out) - (os.path.getsize(out) - sum(
        r["bytes_after"] for r in j["tensors"]))  # consistent rows/totals
    text = rep.table()
    for col in ("SQNR dB", "MSE", "max|err|", "bits/w", "bytes before", "TOTAL", "layers.0.mlp.down.weight"):
        assert col in text


def test_exact_tensor_reports_infinite_sqnr(tmp_path):
    w = np.repeat(np.array([[-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0]], np.float32), 3, axis=0)  # int3 grid, scale 2
    p = tmp_path / "m.safetensors"
    st.write(p, {"w": w})
    rep = ck.quantize_checkpoint(p, tmp_path / "o.safetensors", "int3", granularity="tensor",
                                 report=tmp_path / "r.json")
    assert rep.rows[0]["sqnr_db"] == math.inf and rep.rows[0]["mse"] == 0
    assert json.loads((tmp_path / "r.json").read_text())["tensors"][0]["sqnr_db"] == "inf"


def test_error_stats_independent():
    w = np.array([1.0, -2.0, 3.0, 0.5], np.float32)
    s = ck.tensor_error_stats(w, w + np.array([0.0, 0.5, -0.25, 0.0], np.float32), chunk=3)
    assert s["mse"] == pytest.approx((0.25 + 0.0625) / 4)
    assert s["max_abs_err"] == 0.5
    assert s["sqnr_db"] == pytest.approx(10 * math.log10(14.25 / 0.3125))


def test_sharded_index_equals_single_file(model_file, tmp_path, rng):
    path, t = model_file
    folder = tmp_path / "sharded"
    folder.mkdir()
    names = list(t)
    shard_of = {n: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, n in enumerate(names)}
    for s in set(shard_of.values()):
        st.write(folder / s, {n: t[n] for n in names if shard_of[n] == s})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1},
                                                                     "weight_map": shard_of}))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ck.quantize_checkpoint(path, a, "int4")
    ck.quantize_checkpoint(folder, b, "int4")
    la, lb = lowbit.load(a), lowbit.load(b)
    assert set(la) == set(lb)
    for n in la:
        if isinstance(la[n], lowbit.QTensor):
            assert_qtensor_equal(la[n], lb[n])
        else:
            np.testing.assert_array_equal(la[n], lb[n])
    # a folder of shards without an index works too
    (folder / "model.safetensors.index.json").unlink()
    assert set(lowbit.load(folder)) == set(t)


def _sharded(tmp_path, rng, weight_map, files):
    folder = tmp_path / "s"
    folder.mkdir(exist_ok=True)
    for fname, tensors in files.items():
        st.write(folder / fname, {k: rng.standard_normal((2, 2)).astype(np.float32) for k in tensors}, force=True)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


@pytest.mark.parametrize("wm, files, message", [
    ({"a": "s1.safetensors", "b": "s2.safetensors"}, {"s1.safetensors": ["a"]}, "shard 's2.safetensors' is missing"),
    ({"a": "s1.safetensors", "b": "s1.safetensors"}, {"s1.safetensors": ["a"]}, "tensor 'b' is missing from shard"),
    ({"a": "s1.safetensors"}, {"s1.safetensors": ["a", "zz"]}, "holds tensor 'zz'"),
    ({"a": "../s1.safetensors"}, {"s1.safetensors": ["a"]}, "not a plain file name"),
    ({"a": 3}, {"s1.safetensors": ["a"]}, "weight_map"),
])
def test_bad_shard_index(tmp_path, rng, wm, files, message):
    folder = _sharded(tmp_path, rng, wm, files)
    with pytest.raises(ck.CheckpointError, match=message):
        ck.Checkpoint(folder)
    assert main(["quantize", str(folder), str(tmp_path / "o.safetensors")]) == 1
    assert not (tmp_path / "o.safetensors").exists()


def test_duplicate_tensor_across_files(tmp_path, rng):
    folder = tmp_path / "d"
    folder.mkdir()
    for f in ("a.safetensors", "b.safetensors"):
        st.write(folder / f, {"w": np.zeros((2, 2), np.float32)})
    with pytest.raises(ck.CheckpointError, match="also in"):
        ck.Checkpoint(folder)


def test_memory_stays_near_one_tensor(tmp_path, rng):
    n_t, shape = 12, (512, 512)   # 1 MB per tensor, 12 MB in all
    p = tmp_path / "big.safetensors"
    with st.SafetensorsWriter(p) as w:
        for i in range(n_t):
            w.add(f"l{i}.weight", rng.standard_normal(shape).astype(np.float32))
    one = 4 * shape[0] * shape[1]
    tracemalloc.start()
    try:
        ck.quantize_checkpoint(p, tmp_path / "o.safetensors", "int8")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3.5 * one, f"peak {peak / 1e6:.1f} MB for {one / 1e6:.1f} MB tensors"


# ---------------------------------------------------------------------------
# options and unavailable schemes

@pytest.mark.parametrize("bad, message", [("group:0", "group size"), ("rows", "expected tensor"),
                                          ("group:x", "expected tensor")])
def test_bad_granularity(model_file, tmp_path, bad, message):
    with pytest.raises(ck.CheckpointError, match=message):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "int8", granularity=bad)


@pytest.mark.parametrize("bad, message", [("percentile:101", r"\(0, 100\]"), ("percentile:x", "number"),
                                          ("max", "expected none")])
def test_bad_clip(model_file, tmp_path, bad, message):
    with pytest.raises(ck.CheckpointError, match=message):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "int8", clip=bad)


def test_parse_options():
    assert ck.parse_granularity("group:64") == ("group", 64)
    assert ck.parse_granularity("channel") == ("channel", None)
    assert ck.parse_clip("percentile:99.9") == ("percentile", 99.9)
    assert ck.parse_clip("percentile") == ("percentile", 99.99)
    assert ck.parse_clip("none") == (None, None)
    assert ck.get_scheme("GGUF:q8_0").name == "gguf:Q8_0"


def test_unknown_scheme(model_file, tmp_path, capsys):
    with pytest.raises(ck.CheckpointError, match="unknown scheme 'int9'.*int8"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "int9")
    assert main(["quantize", model_file[0], str(tmp_path / "o.safetensors"), "--scheme", "fp3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lowbit: error: unknown scheme 'fp3'") and err.count("\n") == 1


def test_scheme_needing_a_missing_package_is_a_clear_error(model_file, tmp_path, monkeypatch):
    """Every family is in every build; what a scheme may lack is a third-party package."""
    fake = ck.Scheme("fake", "needs a package", lambda *a: None, packages=("no_such_package_xyz",))
    monkeypatch.setitem(ck.SCHEMES, "fake", fake)
    with pytest.raises(ck.CheckpointError, match="needs the 'no_such_package_xyz' package: pip install"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "fake")
    assert not (tmp_path / "o.safetensors").exists()


def test_a_failing_scheme_is_not_reported_as_missing(model_file, tmp_path, monkeypatch):
    """A bug in a scheme's build surfaces as itself (naming the tensor), never as 'not available'."""
    def broken(*a):
        raise RuntimeError("a bug")
    monkeypatch.setitem(ck.SCHEMES, "broken", ck.Scheme("broken", "raises", broken))
    with pytest.raises(RuntimeError, match="a bug"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "broken")
    assert not (tmp_path / "o.safetensors").exists()


def test_clip(model_file, tmp_path):
    out = tmp_path / "o.safetensors"
    ck.quantize_checkpoint(model_file[0], out, "int8", clip="percentile:99")
    assert out.exists()


def test_wrong_output_extension(model_file, tmp_path):
    with pytest.raises(ck.CheckpointError, match="writes .safetensors"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.gguf", "int8")
    with pytest.raises(ck.CheckpointError, match="writes .gguf|gguf"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "gguf:Q8_0")


def test_requantizing_a_lowbit_file_is_refused(model_file, tmp_path):
    a = tmp_path / "a.safetensors"
    ck.quantize_checkpoint(model_file[0], a, "int8")
    with pytest.raises(ck.CheckpointError, match="already quantized"):
        ck.quantize_checkpoint(a, tmp_path / "b.safetensors", "int4")


def test_same_input_and_output_refused(model_file):
    with pytest.raises(ck.CheckpointError, match="also the input"):
        ck.quantize_checkpoint(model_file[0], model_file[0], "int8", force=True)


def test_nonfinite_weight_names_the_tensor(tmp_path, rng):
    w = rng.standard_normal((4, 4)).astype(np.float32)
    w[1, 2] = np.nan
    p = tmp_path / "n.safetensors"
    st.write(p, {"ok.weight": np.ones((4, 4), np.float32), "bad.weight": w})
    with pytest.raises(ck.CheckpointError, match=r"tensor 'bad.weight'.*non-finite.*\(1, 2\)"):
        ck.quantize_checkpoint(p, tmp_path / "o.safetensors", "int8")
    assert no_temps(tmp_path) and not (tmp_path / "o.safetensors").exists()


# ---------------------------------------------------------------------------
# atomic output

def test_existing_output_refused_unless_force(model_file, tmp_path, capsys):
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"precious")
    assert main(["quantize", model_file[0], str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and str(out) in err and err.count("\n") == 1
    assert out.read_bytes() == b"precious"
    assert main(["quantize", model_file[0], str(out), "-q", "--force"]) == 0
    assert isinstance(lowbit.load(out)["layers.0.attn.q.weight"], lowbit.QTensor)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupt_or_error_leaves_nothing(model_file, tmp_path, exc):
    out = tmp_path / "o.safetensors"
    calls = []

    def progress(done, total, b, bt, name):
        calls.append(name)
        if done == 3:
            raise exc("stop")
    with pytest.raises(exc):
        ck.quantize_checkpoint(model_file[0], out, "int8", progress=progress)
    assert len(calls) == 3
    assert not out.exists() and no_temps(tmp_path)
    # with an existing OUT and --force, the old file survives the interruption
    out.write_bytes(b"old")
    with pytest.raises(exc):
        ck.quantize_checkpoint(model_file[0], out, "int8", progress=progress, force=True)
    assert out.read_bytes() == b"old" and no_temps(tmp_path)


def test_ctrl_c_in_cli_exits_130(model_file, tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ck.driver, "tensor_error_stats", boom)
    assert main(["quantize", model_file[0], str(tmp_path / "o.safetensors")]) == 130
    assert "interrupted; nothing written" in capsys.readouterr().err
    assert os.listdir(tmp_path) == [os.path.basename(model_file[0])]


def test_ctrl_c_after_the_rename_says_so(model_file, tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ck.Report, "save", boom)   # interrupted while writing the report, after OUT
    out = tmp_path / "o.safetensors"
    assert main(["quantize", model_file[0], str(out), "--report", str(tmp_path / "r.json")]) == 130
    err = capsys.readouterr().err
    assert "interrupted after" in err and "completely written" in err
    assert isinstance(lowbit.load(out)["layers.0.attn.q.weight"], lowbit.QTensor)


def test_real_sigint_leaves_nothing(model_file, tmp_path):
    """A real SIGINT (delivered while tensors are being written) through the CLI's handling."""
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import lowbit.cli as cli, lowbit.checkpoint as ck\n"
        "real = ck.driver.tensor_error_stats\n"
        "n = [0]\n"
        "def stats(*a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 2:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(*a, **k)\n"
        "ck.driver.tensor_error_stats = stats\n"
        "sys.exit(cli.main(sys.argv[1:]))\n")
    out = tmp_path / "o.safetensors"
    r = subprocess.run([sys.executable, "-c", script, "quantize", model_file[0], str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 130, r.stderr
    assert "interrupted; nothing written" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_read_only_folder(model_file, tmp_path, monkeypatch, capsys):
    import tempfile

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    out = tmp_path / "o.safetensors"
    assert main(["quantize", model_file[0], str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lowbit: error: ") and "Permission denied" in err and err.count("\n") == 1
    assert not out.exists()


def test_second_temporary_failing_leaves_nothing(model_file, tmp_path, monkeypatch):
    import tempfile
    real = tempfile.mkstemp
    calls = []

    def second_fails(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(tempfile, "mkstemp", second_fails)
    with pytest.raises(ValueError, match="No space left"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "o.safetensors", "int8")
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_for_real(model_file, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["quantize", model_file[0], str(ro / "o.safetensors")]) == 1
        assert "cannot write" in capsys.readouterr().err
        assert os.listdir(ro) == []
    finally:
        ro.chmod(0o755)


def test_bad_report_path_fails_before_writing(model_file, tmp_path):
    out = tmp_path / "o.safetensors"
    with pytest.raises(ValueError, match="does not exist"):
        ck.quantize_checkpoint(model_file[0], out, "int8", report=tmp_path / "nope" / "r.json")
    assert not out.exists()


def test_output_folder_missing(model_file, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ck.quantize_checkpoint(model_file[0], tmp_path / "nope" / "o.safetensors", "int8")


def test_missing_input(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.safetensors")]) == 1
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# lowbit.save / lowbit.load

def test_save_load_roundtrip(tmp_path, rng):
    w = rng.standard_normal((6, 10)).astype(np.float32)
    t = {"a": lowbit.quantize(w, 8), "b": lowbit.quantize(w, 4, scheme="minmax", axis=1),
         "c": lowbit.quantize(w, 3, group_size=4), "bias": np.arange(3, dtype=np.int32),
         "h": w.astype(np.float16), "flag": np.array([True])}
    p = tmp_path / "s.safetensors"
    lowbit.save(p, t, metadata={"note": "hi"})
    back = lowbit.load(p)
    assert list(back) == list(t)
    for k in ("a", "b", "c"):
        assert_qtensor_equal(back[k], t[k])
    for k in ("bias", "h", "flag"):
        np.testing.assert_array_equal(back[k], t[k])
        assert back[k].dtype == t[k].dtype
    with pytest.raises(st.SafetensorsError, match="already exists"):
        lowbit.save(p, t)
    lowbit.save(p, {"x": np.zeros(2, np.float32)}, force=True)
    assert list(lowbit.load(p)) == ["x"]


def test_save_rejects_bad_input(tmp_path):
    qt = lowbit.quantize(np.ones((2, 2), np.float32), 8)
    with pytest.raises(ValueError, match="clashes"):
        lowbit.save(tmp_path / "a.safetensors", {"w": qt, "w:codes": np.zeros(1)})
    with pytest.raises(TypeError):
        lowbit.save(tmp_path / "a.safetensors", {"w": object()})
    with pytest.raises(TypeError):
        lowbit.save(tmp_path / "a.safetensors", [qt])
    assert no_temps(tmp_path) and not (tmp_path / "a.safetensors").exists()


def _tamper(tmp_path, fn):
    qt = lowbit.quantize(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), 4, scheme="minmax", axis=0)
    p = tmp_path / "t.safetensors"
    lowbit.save(p, {"w": qt})
    with st.SafetensorsFile(p) as f:
        tensors = {k: np.array(f.get(k)) for k in f.keys()}
        meta = dict(f.metadata)
    fn(tensors, meta)
    p2 = tmp_path / "t2.safetensors"
    st.write(p2, tensors, metadata=meta)
    return p2


@pytest.mark.parametrize("fn, message", [
    (lambda t, m: m.__setitem__("lowbit.qtensor:w", "{not json"), "not valid JSON"),
    (lambda t, m: t.__setitem__("w:codes", np.full((3, 4), 99, np.uint8)), "outside the 4-bit grid"),
    (lambda t, m: t.__setitem__("w:codes", np.zeros((2, 4), np.uint8)), "does not match shape"),
    (lambda t, m: t.__setitem__("w:scale", np.ones((3, 1), np.float64)), "float32"),
    (lambda t, m: t.pop("w:scale"), "missing 'scale'"),
    (lambda t, m: t.__setitem__("w:extra", np.ones(1, np.float32)), "unknown QTensor piece 'extra'"),
    (lambda t, m: m.__setitem__("lowbit.qtensor:w", m["lowbit.qtensor:w"].replace('"minmax"', '"evil"')),
     "unknown scheme 'evil'"),
])
def test_load_validates_quantized_records(tmp_path, fn, message):
    p = _tamper(tmp_path, fn)
    with pytest.raises(ValueError, match=message) as ei:
        lowbit.load(p)
    assert str(p) in str(ei.value)


# ---------------------------------------------------------------------------
# CLI

def test_cli_quantize_prints_table_and_writes_report(model_file, tmp_path, capsys):
    out, rj = tmp_path / "o.safetensors", tmp_path / "r.json"
    assert main(["quantize", model_file[0], str(out), "--scheme", "int4", "--granularity", "group:8",
                 "--report", str(rj)]) == 0
    text = capsys.readouterr().out
    assert "layers.0.attn.q.weight" in text and "SQNR dB" in text and "tensors/s" in text
    assert json.loads(rj.read_text())["options"]["granularity"] == "group:8"


def test_cli_inspect(model_file, tmp_path, capsys):
    assert main(["inspect", model_file[0]]) == 0
    text = capsys.readouterr().out
    assert "layers.0.attn.q.weight" in text and "(would quantize)" in text and "I64" in text
    out = tmp_path / "o.safetensors"
    ck.quantize_checkpoint(model_file[0], out, "int8")
    assert main(["inspect", str(out), "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    kinds = {r["name"]: r for r in j["tensors"]}
    assert kinds["layers.0.attn.q.weight"]["kind"] == "quantized"
    assert kinds["layers.0.attn.q.weight"]["granularity"] == "per-channel(axis=0)"
    assert kinds["embed.weight"]["kind"] == "array" and j["lowbit"] is True


def test_cli_schemes_lists_availability(capsys):
    assert main(["schemes"]) == 0
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in text.splitlines()[2:]}
    assert " yes " in lines["int8"] and "gguf:Q8_0" in lines and "nf4" in lines


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["quantize"])
    assert ei.value.code == 2
    assert main([]) == 2


def test_progress_bar_shows_rates():
    s = io.StringIO()
    p = Progress(s, force=True)
    p(1, 2, 1_000_000, 2_000_000, "a")
    p(2, 2, 2_000_000, 2_000_000, "b")
    p.close()
    out = s.getvalue()
    assert "2/2 tensors" in out and "tensors/s" in out and "MB/s" in out and out.endswith("\n")
    quiet = io.StringIO()
    Progress(quiet)(1, 1, 1, 1, "x")   # not a terminal: draws nothing
    assert quiet.getvalue() == ""


def test_plot_writes_png(model_file, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    png = tmp_path / "p.png"
    assert main(["plot", model_file[0], "--tensor", "layers.0.attn.q.weight", "--out", str(png),
                 "--scheme", "int4", "--granularity", "channel"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", model_file[0], "--tensor", "nope", "--out", str(tmp_path / "x.png")]) == 1
    assert "no tensor named 'nope'" in capsys.readouterr().err
    assert main(["plot", model_file[0], "--tensor", "position_ids", "--out", str(tmp_path / "x.png")]) == 1
    assert "floating-point" in capsys.readouterr().err
    # a quantized file: the stored QTensor is drawn
    q = tmp_path / "q.safetensors"
    ck.quantize_checkpoint(model_file[0], q, "int4", granularity="tensor")
    assert main(["plot", str(q), "--tensor", "layers.0.attn.q.weight", "--out", str(tmp_path / "q.png")]) == 0
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib(model_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", model_file[0], "--tensor", "layers.0.attn.q.weight", "--out", str(tmp_path / "p.png")]) == 1
    assert "matplotlib" in capsys.readouterr().err


def test_demo_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", str(tmp_path / "d"), "--scheme", "int8"]) == 0
    out = capsys.readouterr().out
    assert "SQNR" in out and "MB/s" in out and "read it back" in out
    assert (tmp_path / "d" / "demo-model.int8.safetensors").exists()


def test_python_dash_m_lowbit(model_file, tmp_path):
    r = subprocess.run([sys.executable, "-m", "lowbit", "inspect", model_file[0]], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "embed.weight" in r.stdout
    r = subprocess.run([sys.executable, "-m", "lowbit", "quantize", model_file[0], str(tmp_path / "x.txt")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "x.txt" in r.stderr


# ---------------------------------------------------------------------------
# fuzz: hostile headers built field by field

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

_DT = list(st.DTYPES) + ["F8_E4M3", "F33", "", "f32", 3, None]
_INT = hst.one_of(hst.integers(-5, 64), hst.integers(-2 ** 70, 2 ** 70), hst.sampled_from([0, 1, 2 ** 63, 2 ** 64]))


@hst.composite
def _headers(draw):
    h = {}
    for i in range(draw(hst.integers(0, 4))):
        ent = {"dtype": draw(hst.sampled_from(_DT)),
               "shape": draw(hst.one_of(hst.lists(_INT, max_size=3), hst.lists(hst.integers(0, 4), max_size=3),
                                        hst.booleans(), hst.none())),
               "data_offsets": draw(hst.one_of(hst.lists(_INT, min_size=2, max_size=2),
                                               hst.tuples(hst.integers(0, 40), hst.integers(0, 40)).map(list),
                                               hst.lists(_INT, max_size=3), hst.text(max_size=3)))}
        if draw(hst.booleans()):
            ent.pop(draw(hst.sampled_from(list(ent))))
        h[draw(hst.sampled_from(["a", "b", "c", "__metadata__", f"t{i}"]))] = ent
    if draw(hst.booleans()):
        h["__metadata__"] = draw(hst.dictionaries(hst.text(max_size=3), hst.one_of(hst.text(max_size=3), _INT),
                                                  max_size=2))
    return h


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(header=_headers(), data_len=hst.integers(0, 48), junk_len=hst.one_of(hst.none(), hst.integers(0, 2 ** 64 - 1)))
def test_fuzz_headers(tmp_path, header, data_len, junk_len):
    p = tmp_path / "f.safetensors"
    raw_file(p, header, bytes(range(data_len)), header_len=junk_len)
    try:
        f = st.SafetensorsFile(p)
    except st.SafetensorsError:
        return
    with f:
        for name in f.keys():
            info = f.info(name)
            arr = f.get(name)
            assert arr.shape == info.shape
            assert (arr.size * st.DTYPES[info.dtype].itemsize) == info.nbytes
