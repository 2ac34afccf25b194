"""Importance matrices written by llama.cpp's own `llama-imatrix`, read by lowbit.

The files in tests/data/imatrix/ are real llama-imatrix output (llama.cpp from the
llama-cpp-python 0.3.36 sdist), made from the model `tiny_llama()` below writes with
seed 0 and the text `imatrix_text()`:

    llama-imatrix -m tiny.gguf -f text.txt -o tiny-llama.imatrix.gguf -c 64 --chunks 4 -t 1
    llama-imatrix -m tiny.gguf -f text.txt -o tiny-llama.imatrix.dat  -c 64 --chunks 4 -t 1 \
        --output-format dat

(llama-imatrix aborts on BERT models, so the all-MiniLM tests use imatrix files lowbit
writes.) lowbit must read both formats as llama.cpp reads them, and a model quantized
with them must be byte-identical to llama.cpp's quantizer given the same file.
"""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from lowbit import imatrix as IM
from lowbit.io import gguf_model as GM

gguf = pytest.importorskip("gguf", reason="the gguf package writes the test models: pip install gguf")

from test_gguf_model import (_oracle_imatrix, _oracle_imatrix_meta, encodable, imatrix_encodable,  # noqa: E402
                             llama_quantize, make_model)

DATA = pathlib.Path(__file__).parent / "data" / "imatrix"
GGUF_FILE = DATA / "tiny-llama.imatrix.gguf"
DAT_FILE = DATA / "tiny-llama.imatrix.dat"
N_EMBD, N_FF, N_LAYER, N_HEAD = 256, 512, 2, 4
LINEAR = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def imatrix_text():
    return " ".join(f"t{i % 64}" for i in range(3000)) + "\n"


def tiny_llama(path, seed=0):
    """A llama model llama.cpp can run: a SentencePiece vocabulary with byte fallback tokens
    (so any text tokenizes), random weights."""
    toks = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    toks += [f"\u2581w{i}".encode() for i in range(61)]
    types = [2, 3, 3] + [6] * 256 + [1] * 61     # unknown, control, byte, normal
    return make_model(path, n_embd=N_EMBD, n_ff=N_FF, n_layer=N_LAYER, n_head=N_HEAD, n_head_kv=N_HEAD,
                      seed=seed, vocab=(toks, types, {"bos": 1, "eos": 2, "unk": 0}))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def test_files_are_llama_imatrix_output():
    """What llama-imatrix wrote (read with the gguf package, not with lowbit)."""
    r = gguf.GGUFReader(str(GGUF_FILE))
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "imatrix"
    names = {t.name for t in r.tensors}
    expected = {f"blk.{i}.{n}.weight" for i in range(N_LAYER) for n in LINEAR}
    assert names == {f"{n}.in_sum2" for n in expected} | {f"{n}.counts" for n in expected}


@pytest.mark.parametrize("path", [GGUF_FILE, DAT_FILE], ids=["gguf", "dat"])
def test_read_real_file(path):
    im = IM.load_imatrix(path)
    ref = _oracle_imatrix(path)      # the values llama-quantize uses: sum / count per column
    assert im.names() == sorted(ref)
    assert len(ref) == N_LAYER * len(LINEAR)
    for name, v in ref.items():
        got = im.values(name)
        cols = N_FF if "ffn_down" in name else N_EMBD
        assert got.shape == v.shape == (cols,), name
        np.testing.assert_array_equal(got, v, err_msg=name)
        assert np.all(got > 0), name        # activations of every column were seen
    meta = _oracle_imatrix_meta(path)
    assert im.chunk_count == meta["chunks"] == 4
    assert im.datasets == meta["datasets"]
    if path.suffix == ".gguf":
        assert im.chunk_size == 64


def test_gguf_and_dat_agree():
    """The two files of the same run hold the same importance values (dat stores the mean,
    GGUF the sums and counts; llama.cpp's quantizer divides the same way)."""
    a, b = IM.load_imatrix(GGUF_FILE), IM.load_imatrix(DAT_FILE)
    assert a.names() == b.names()
    for name in a.names():
        np.testing.assert_allclose(a.values(name), b.values(name),
                                   rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_resave_is_the_same_matrix(tmp_path, fmt):
    """lowbit writes back what it read: llama.cpp's reading of our copy equals its reading of the original."""
    out = tmp_path / f"copy.{fmt}"
    IM.load_imatrix(GGUF_FILE).save(out, format=fmt)
    orig, copy = _oracle_imatrix(GGUF_FILE), _oracle_imatrix(out)
    assert sorted(orig) == sorted(copy)
    for name in orig:
        np.testing.assert_allclose(copy[name], orig[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("path", [GGUF_FILE, DAT_FILE], ids=["gguf", "dat"])
@pytest.mark.parametrize("preset", ["Q4_K_M", "IQ4_XS", "Q2_K", "Q3_K_S", "Q5_K_M", "Q6_K", "Q4_0"])
def test_quantize_with_real_imatrix_identical_to_llama_quantize(model, tmp_path, path, preset):
    with GM.GGUFFile(model) as f:
        plans = GM.plan_types(f, preset, has_imatrix=True)
    assert encodable(plans) and imatrix_encodable(plans, set(IM.load_imatrix(path).entries))
    ref, out = tmp_path / "ref.gguf", tmp_path / "lowbit.gguf"
    llama_quantize(model, ref, preset, imatrix_file=str(path))
    GM.quantize_model(model, out, preset, imatrix=str(path))
    with GM.GGUFFile(out) as x, GM.GGUFFile(ref) as y:
        assert [t.name for t in x.tensors] == [t.name for t in y.tensors]
        for t in y.tensors:
            assert bytes(x.data(t.name)) == bytes(y.data(t.name)), t.name
    assert out.read_bytes() == ref.read_bytes()
    # and the imatrix changed the bytes (it is used, not ignored): without it they differ
    plain = tmp_path / "plain.gguf"
    GM.quantize_model(model, plain, preset)
    with GM.GGUFFile(out) as x, GM.GGUFFile(plain) as z:
        assert any(bytes(x.data(t.name)) != bytes(z.data(t.name)) for t in x.tensors if "blk." in t.name)
