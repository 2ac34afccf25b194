"""Fuzzing the parsers of untrusted input with hypothesis: every input either
parses into something that works, or raises ValueError/TypeError. Never a crash,
a hang, or another exception type. Bounded and derandomized here (conftest's
"ci" profile); run long random fuzzing by hand with --hypothesis-profile=fuzz
(see docs/reliability.md)."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lowbit

# 150 examples per parser in CI; the loaded profile (ci, seeded or fuzz) decides the rest
FUZZ = settings(max_examples=max(150, settings.default.max_examples))

SCHEMES = ["absmax", "minmax", "ternary", "binary", "nf4", "kmeans", "bogus", ""]
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                         st.text(max_size=8))


@st.composite
def qt_dicts(draw):
    """Mostly plausible QTensor dicts with one or more fields broken."""
    shape = list(draw(small_shapes))
    meta = {"format": draw(st.sampled_from(["lowbit.qtensor", "x"])) if draw(st.booleans()) else "lowbit.qtensor",
            "version": draw(st.sampled_from([1, 1, 1, 2, "1"])),
            "shape": draw(st.one_of(st.just(shape), st.lists(st.integers(-3, 7), max_size=4), json_scalars)),
            "bits": draw(st.one_of(st.integers(-1, 10), json_scalars)),
            "scheme": draw(st.sampled_from(SCHEMES)),
            "axis": draw(st.one_of(st.none(), st.integers(-4, 4), json_scalars)),
            "group_size": draw(st.one_of(st.none(), st.integers(-1, 8), json_scalars)),
            "signed": draw(st.one_of(st.booleans(), json_scalars)),
            "narrow": draw(st.booleans()),
            "packed": draw(st.one_of(st.none(), st.sampled_from(["b1", "b2", "b4", "ternary2", "base3", "zz"]))),
            "meta": draw(st.one_of(st.just({}), st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)))}
    for key in draw(st.lists(st.sampled_from(sorted(meta)), max_size=2, unique=True)):
        del meta[key]
    raw = json.dumps(meta).encode()
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=64)) if draw(st.booleans()) else raw[: draw(st.integers(0, len(raw)))]
    d = {"qmeta": np.frombuffer(raw, np.uint8).copy()}
    code_dtype = draw(st.sampled_from([np.int8, np.uint8, np.int16, np.float32]))
    d["codes"] = draw(hnp.arrays(code_dtype, draw(st.one_of(st.just(tuple(shape)), small_shapes))))
    d["scale"] = draw(hnp.arrays(draw(st.sampled_from([np.float32, np.float64])), small_shapes))
    if draw(st.booleans()):
        d["zero_point"] = draw(hnp.arrays(draw(st.sampled_from([np.int32, np.int64])), small_shapes))
    if draw(st.booleans()):
        d["codebook"] = draw(hnp.arrays(np.float32, st.integers(0, 20)))
    for key in draw(st.lists(st.sampled_from(["codes", "scale", "qmeta"]), max_size=1, unique=True)):
        del d[key]
    return d


@FUZZ
@given(qt_dicts())
def test_from_dict_never_crashes(d):
    try:
        qt = lowbit.QTensor.from_dict(d)
    except (ValueError, TypeError):
        return
    y = qt.dequantize()  # whatever parsed must be usable
    assert y.shape == qt.shape and y.dtype == np.float32


@FUZZ
@given(st.data())
def test_valid_dicts_round_trip(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-100, 100, width=32)))
    kw = data.draw(st.sampled_from([dict(), dict(axis=0), dict(axis=-1), dict(group_size=4),
                                    dict(scheme="minmax", bits=3)]))
    qt = lowbit.quantize(x, **kw)
    back = lowbit.QTensor.from_dict({k: v.copy() for k, v in qt.to_dict().items()})
    np.testing.assert_array_equal(back.dequantize(), qt.dequantize())


# ---- packed buffers, GGUF blobs, weight records, checkpoint files ----------

GGUF_FORMATS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "TQ1_0", "TQ2_0"]


@FUZZ
@given(blob=st.binary(max_size=2048), fmt=st.sampled_from(GGUF_FORMATS + ["Q9_9"]),
       shape=st.lists(st.integers(-1, 600), min_size=0, max_size=3))
def test_gguf_dequantize_random_blobs(blob, fmt, shape):
    try:
        y = lowbit.gguf.dequantize(np.frombuffer(blob, np.uint8), fmt, tuple(shape))
    except (ValueError, TypeError):
        return
    assert y.dtype == np.float32 and y.shape == tuple(shape)


@FUZZ
@given(data=st.binary(max_size=512), rows=st.integers(0, 4), bits=st.integers(-1, 9), n=st.integers(-2, 600),
       signed=st.booleans(), layout=st.sampled_from(["2bit", "base3", "4bit"]))
def test_unpack_random_buffers(data, rows, bits, n, signed, layout):
    buf = np.frombuffer(data, np.uint8)
    if rows:
        buf = buf[: len(buf) // rows * rows].reshape(rows, -1)
    for call in (lambda: lowbit.unpack(buf, bits, n, signed=signed),
                 lambda: lowbit.unpack_ternary(buf, n, layout)):
        try:
            codes = call()
        except (ValueError, TypeError):
            continue
        assert codes.shape[-1] == n and codes.dtype in (np.int8, np.uint8)


@FUZZ
@given(data=st.data())
def test_ternary_weight_records(data):
    w = np.random.default_rng(data.draw(st.integers(0, 9))).standard_normal((5, 40)).astype(np.float32)
    d = lowbit.TernaryWeight.from_float(w).to_dict(data.draw(st.sampled_from(["kernel", "2bit", "base3"])))
    key = data.draw(st.sampled_from(sorted(d)))
    arr = d[key].copy()
    mode = data.draw(st.sampled_from(["flip", "truncate", "retype", "drop"]))
    if mode == "flip" and arr.size:
        flat = arr.view(np.uint8).reshape(-1)
        i = data.draw(st.integers(0, flat.size - 1))
        flat[i] ^= np.uint8(1 << data.draw(st.integers(0, 7)))
        d[key] = arr
    elif mode == "truncate":
        d[key] = arr.reshape(-1)[: data.draw(st.integers(0, max(arr.size - 1, 0)))]
    elif mode == "retype":
        d[key] = arr.astype(np.int64)
    else:
        del d[key]
    try:
        tw = lowbit.TernaryWeight.from_dict(d)
    except (ValueError, TypeError):
        return
    # A record whose fields agree is a valid weight, though perhaps not the one written
    # (records carry no checksum: docs/reliability.md). It must work at its own shape,
    # match the reference, and store back to the record it was read from.
    N, K = tw.shape
    x = np.random.default_rng(1).standard_normal((2, K)).astype(np.float32)
    with np.errstate(over="ignore"):  # a flipped exponent bit may make the scale huge: y overflows to inf
        np.testing.assert_array_equal(lowbit.ternary_matmul(x, tw), lowbit.reference.ternary_matmul(x, tw))
    back = lowbit.TernaryWeight.from_dict(tw.to_dict())
    assert back.shape == (N, K)
    np.testing.assert_array_equal(back.codes(), tw.codes())


@FUZZ
@given(data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{",
                                                              b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":"]))
def test_load_random_files(tmp_path_factory, data, prefix):
    path = tmp_path_factory.mktemp("fz") / "x.safetensors"
    path.write_bytes(prefix + data)
    try:
        out = lowbit.load(str(path))
    except (ValueError, TypeError):
        return
    assert isinstance(out, dict)
