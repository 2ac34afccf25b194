"""Whole-checkpoint quantization (lowbit quantize): throughput against copying the file.

    python -m pytest bench/test_bench_checkpoint.py --benchmark-only

The checkpoint: 8 float32 weight matrices of 2048x2048 plus a kept 8192x512
embedding (150 MB). Yardsticks in the same run: copying the file (shutil.copyfile:
read + write of every byte, the floor for any tool that writes a new file), and
the safetensors package reading every tensor into memory and writing them back.
"""
import os
import shutil

import numpy as np
import pytest

import lowbit
from lowbit.io import safetensors as st


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    p = d / "model.safetensors"
    rng = np.random.default_rng(0)
    with st.SafetensorsWriter(p) as w:
        w.add("embed_tokens.weight", rng.standard_normal((8192, 512), dtype=np.float32))
        for i in range(8):
            w.add(f"layers.{i}.weight", rng.standard_normal((2048, 2048), dtype=np.float32))
    return str(p), d


def _mbps(benchmark, nbytes):
    benchmark.extra_info["MB"] = nbytes / 1e6


@pytest.mark.parametrize("scheme", ["int8", "int4", "uint4"])
def test_quantize_checkpoint(benchmark, ckpt, scheme):
    path, d = ckpt
    out = str(d / f"out-{scheme}.safetensors")
    benchmark.group = "checkpoint 150 MB"
    benchmark.pedantic(lowbit.quantize_checkpoint, (path, out, scheme), {"force": True}, rounds=3, iterations=1)
    _mbps(benchmark, os.path.getsize(path))


def test_copy_file(benchmark, ckpt):
    path, d = ckpt
    benchmark.group = "checkpoint 150 MB"
    benchmark.pedantic(shutil.copyfile, (path, str(d / "copy.safetensors")), rounds=3, iterations=1)


def test_safetensors_package_load_save(benchmark, ckpt):
    stnp = pytest.importorskip("safetensors.numpy")
    path, d = ckpt
    benchmark.group = "checkpoint 150 MB"

    def run():
        stnp.save_file(stnp.load_file(path), str(d / "st.safetensors"))
    benchmark.pedantic(run, rounds=3, iterations=1)
