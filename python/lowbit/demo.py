"""``lowbit demo``: the whole pipeline on a generated checkpoint, no download, a few seconds.

It writes a small transformer-shaped checkpoint (embeddings, 4 blocks of
attention and MLP weights with heavy-tailed values, norms, biases, one BF16
tensor) to a folder, quantizes it, prints the per-tensor report, loads the
result back, checks it, and draws one plot (when matplotlib is installed).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Optional

import numpy as np

from . import checkpoint as ck
from .io import safetensors as st
from .qtensor import QTensor

__all__ = ["make_demo_checkpoint", "run"]


def make_demo_checkpoint(path, *, layers: int = 4, d: int = 256, ff: int = 1024, vocab: int = 2000,
                         seed: int = 0) -> Dict[str, np.ndarray]:
    """Write a generated transformer-like checkpoint to ``path``; returns its tensors."""
    rng = np.random.default_rng(seed)

    def weight(n_out, n_in):
        # Student-t weights: mostly Gaussian-looking with a few outliers, like trained layers.
        w = rng.standard_t(5, size=(n_out, n_in)) * (0.6 / np.sqrt(n_in))
        return w.astype(np.float32)

    t: Dict[str, np.ndarray] = {"embed_tokens.weight": (rng.standard_normal((vocab, d)) * 0.02).astype(np.float32)}
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[p + f"attn.{n}.weight"] = weight(d, d)
            t[p + f"attn.{n}.bias"] = (rng.standard_normal(d) * 0.01).astype(np.float32)
        t[p + "mlp.up_proj.weight"] = weight(ff, d)
        t[p + "mlp.down_proj.weight"] = weight(d, ff)
        t[p + "input_norm.weight"] = (1 + 0.05 * rng.standard_normal(d)).astype(np.float32)
        t[p + "post_norm.weight"] = (1 + 0.05 * rng.standard_normal(d)).astype(np.float32)
    t["final_norm.weight"] = np.ones(d, np.float32)
    lm = weight(vocab, d)
    bits = lm.view(np.uint32)
    raw = {k: v for k, v in t.items()}
    # the output head in bfloat16 (rounded to nearest even), as many checkpoints ship it
    bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    raw["lm_head.weight"] = st.RawTensor("BF16", lm.shape, bf16.reshape(-1).view(np.uint8))
    st.write(path, raw, metadata={"format": "pt", "generator": "lowbit demo"})
    t["lm_head.weight"] = st.bf16_to_float32(bf16)
    return t


def run(out_dir: Optional[str] = None, scheme: str = "int4", stream=None) -> int:
    stream = stream or sys.stdout
    say = lambda *a: print(*a, file=stream)  # noqa: E731
    tmp = None
    if out_dir is None:
        tmp = out_dir = tempfile.mkdtemp(prefix="lowbit-demo-")
    os.makedirs(out_dir, exist_ok=True)
    try:
        src = os.path.join(out_dir, "demo-model.safetensors")
        dst = os.path.join(out_dir, f"demo-model.{scheme.replace(':', '_')}.safetensors")
        t0 = time.perf_counter()
        tensors = make_demo_checkpoint(src)
        say(f"1. generated a small transformer checkpoint: {len(tensors)} tensors, "
            f"{os.path.getsize(src) / 1e6:.1f} MB -> {src}  ({time.perf_counter() - t0:.2f} s)")
        say(f"2. lowbit quantize {os.path.basename(src)} {os.path.basename(dst)} --scheme {scheme} --force")
        from ._progress import Progress
        bar = Progress()
        try:
            rep = ck.quantize_checkpoint(src, dst, scheme, force=True, progress=bar)
        finally:
            bar.close()
        say(rep.table(all_rows=False))
        say(rep.summary())
        t0 = time.perf_counter()
        back = ck.load(dst)
        n_q = sum(isinstance(v, QTensor) for v in back.values())
        name = "layers.0.mlp.up_proj.weight"
        err = float(np.max(np.abs(back[name].dequantize() - tensors[name])))
        say(f"3. lowbit.load read it back: {n_q} QTensors + {len(back) - n_q} arrays in "
            f"{time.perf_counter() - t0:.3f} s; {name}: max |w - w_hat| = {err:.4g}")
        from . import plot
        if plot.have_matplotlib():
            png = os.path.join(out_dir if tmp is None else os.getcwd(), "lowbit-demo.png")
            if not os.access(os.path.dirname(png), os.W_OK):
                png = os.path.join(tempfile.gettempdir(), "lowbit-demo.png")
            plot.plot_checkpoint_tensor(src, name, png, scheme=scheme, granularity="tensor", force=True)
            say(f"4. plot of {name} quantized per tensor (histogram, levels, clip range, staircase): {png}")
        else:
            say("4. no plot: matplotlib is not installed (pip install 'lowbit[plot]')")
        if tmp is None:
            say(f"files kept in {out_dir}")
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
