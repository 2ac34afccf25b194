"""Importance matrices (llama.cpp's "imatrix"): per input column, the mean of x^2 over calibration tokens.

- ``load_imatrix(path)`` reads ``llama-imatrix``'s output: its GGUF files
  (``<tensor>.in_sum2`` + ``<tensor>.counts``, keys ``imatrix.datasets``,
  ``imatrix.chunk_count``, ``imatrix.chunk_size``) and the older ``.dat`` files.
  ``Imatrix.values(name)`` gives the per-column importance exactly as
  ``llama-quantize`` computes it from the file (sums / count in float32, per
  expert; a matrix with count 0 gets ones).
- ``ImatrixCollector`` computes one from activations in Python: call
  ``update(name, x)`` with the input ``x`` (..., n_in) of the linear layer whose
  weight is ``name`` (a GGUF tensor name such as ``blk.0.attn_q.weight``), or use
  ``collector.hook(name)`` as a torch forward hook; then ``save(path)`` writes
  llama-imatrix's GGUF format (``format="dat"``: the legacy one), which both
  ``lowbit quantize --imatrix`` and ``llama-quantize --imatrix`` accept.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Imatrix", "ImatrixCollector", "load_imatrix", "save_imatrix"]

_MAX_DAT_NAME = 1 << 16


@dataclass
class Imatrix:
    """Raw importance data as stored: per tensor name, the column sums of x^2
    (``sums``, float32, ``n_mat * n_in`` values) and the token count per matrix
    (``counts``, int64, ``n_mat`` values; one matrix unless the tensor holds experts).

    Legacy (.dat) files store ``mean * ncall`` and one ``ncall`` per entry; they
    are kept that way (``is_legacy``) so ``values`` matches llama-quantize exactly.
    """
    entries: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    datasets: List[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    is_legacy: bool = False

    def values(self, name: str) -> np.ndarray:
        """Per-column importance of tensor ``name`` (float32, ``n_mat * n_in``), as llama-quantize derives it."""
        sums, counts = self.entries[name]
        sums = np.asarray(sums, np.float32)
        if self.is_legacy:
            ncall = int(counts[0]) if len(counts) else 0
            return sums / np.float32(ncall) if ncall > 0 else sums.copy()
        n = len(counts)
        ne0 = sums.size // n
        out = np.empty_like(sums)
        for j in range(n):
            c = np.float32(counts[j])
            if c > 0:
                out[j * ne0:(j + 1) * ne0] = sums[j * ne0:(j + 1) * ne0] / c
            else:
                out[j * ne0:(j + 1) * ne0] = 1.0
        return out

    def names(self) -> List[str]:
        return sorted(self.entries)

    def __contains__(self, name) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> "Imatrix":
        """An imatrix whose ``values(name)`` are exactly the given arrays (per-column importance)."""
        entries = {}
        for k, v in d.items():
            if not isinstance(k, str) or not k:
                raise ValueError(f"imatrix names must be non-empty strings, got {k!r}")
            a = np.ascontiguousarray(v, np.float32).reshape(-1)
            if a.size == 0:
                raise ValueError(f"imatrix {k!r}: empty")
            if not np.isfinite(a).all() or (a < 0).any():
                raise ValueError(f"imatrix {k!r}: values must be finite and >= 0")
            entries[k] = (a, np.ones(1, np.int64))
        return cls(entries, is_legacy=True)

    def save(self, path, *, format: str = "gguf", force: bool = True) -> None:
        save_imatrix(path, self, format=format, force=force)


# ---------------------------------------------------------------------------
# reading

def load_imatrix(path) -> Imatrix:
    """Read llama-imatrix output (GGUF or legacy .dat; the format is detected from the content)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise ValueError(f"{path}: cannot open imatrix: {e.strerror or e}") from None
    if magic == b"GGUF":
        return _load_gguf(path)
    return _load_dat(path)


def _load_gguf(path: str) -> Imatrix:
    from .io.gguf_model import GGUFFile
    with GGUFFile(path) as f:
        ds = f.value("imatrix.datasets")
        if ds is None or "imatrix.chunk_count" not in f.kv or "imatrix.chunk_size" not in f.kv:
            raise ValueError(f"{path}: missing imatrix metadata (imatrix.datasets, imatrix.chunk_count, "
                             "imatrix.chunk_size); llama-quantize refuses such a file too")
        im = Imatrix(datasets=[str(s) for s in ds] if isinstance(ds, list) else [],
                     chunk_count=int(f.value("imatrix.chunk_count")), chunk_size=int(f.value("imatrix.chunk_size")))
        pairs: Dict[str, List[Optional[str]]] = {}
        for t in f.tensors:
            for suffix, slot in ((".in_sum2", 0), (".counts", 1)):
                if t.name.endswith(suffix) and len(t.name) > len(suffix):
                    pairs.setdefault(t.name[:-len(suffix)], [None, None])[slot] = t.name
        if not f.tensors:
            raise ValueError(f"{path}: no data in the imatrix file")
        for name, (s, c) in sorted(pairs.items()):
            if s is None or c is None:
                raise ValueError(f"{path}: mismatched sums and counts for {name}")
            ts, tc = f.info(s), f.info(c)
            if ts.type != "F32" or tc.type != "F32":
                raise ValueError(f"{path}: sums and counts for {name} must be F32")
            sums = f.data(s).view(np.float32).copy()
            cf = f.data(c).view(np.float32)
            if not np.isfinite(cf).all() or (np.abs(cf) > 2.0 ** 62).any():
                raise ValueError(f"{path}: counts for {name} are not finite")
            # std::lround: half away from zero
            counts = (np.sign(cf) * np.floor(np.abs(cf.astype(np.float64)) + 0.5)).astype(np.int64)
            if counts.size == 0 or sums.size % counts.size:
                raise ValueError(f"{path}: {name}: {sums.size} sums do not split into {counts.size} matrices")
            im.entries[name] = (sums, counts)
        return im


def _load_dat(path: str) -> Imatrix:
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise ValueError(f"{path}: not a GGUF or .dat imatrix (truncated at byte {pos})")
        b = data[pos:pos + n]
        pos += n
        return b

    (n_entries,) = struct.unpack("<i", take(4))
    if n_entries < 1:
        raise ValueError(f"{path}: no data in the imatrix file")
    im = Imatrix(is_legacy=True)
    for i in range(n_entries):
        (ln,) = struct.unpack("<i", take(4))
        if not 0 <= ln <= _MAX_DAT_NAME:
            raise ValueError(f"{path}: entry {i + 1}: bad name length {ln}")
        name = take(ln).split(b"\0", 1)[0].decode("utf-8", errors="replace")
        ncall, nval = struct.unpack("<ii", take(8))
        if nval < 1:
            raise ValueError(f"{path}: entry {i + 1} ({name}): bad number of values {nval}")
        sums = np.frombuffer(take(4 * nval), "<f4").astype(np.float32)
        im.entries[name] = (sums, np.array([ncall], np.int64))
    if pos < len(data):
        if pos + 4 <= len(data):
            (im.chunk_count,) = struct.unpack("<i", take(4))
            if pos + 4 <= len(data):
                (ln,) = struct.unpack("<i", take(4))
                if 0 < ln <= len(data) - pos:
                    im.datasets.append(take(ln).split(b"\0", 1)[0].decode("utf-8", errors="replace"))
    return im


# ---------------------------------------------------------------------------
# writing

def _gguf_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def save_imatrix(path, im: Imatrix, *, format: str = "gguf", force: bool = True) -> None:
    """Write ``im`` as llama-imatrix does: ``format="gguf"`` (its default) or ``"dat"`` (legacy). Atomic."""
    from .io.safetensors import atomic_output
    if format not in ("gguf", "dat"):
        raise ValueError(f"format must be 'gguf' or 'dat', got {format!r}")
    if not im.entries:
        raise ValueError("the imatrix has no entries")
    blob = _gguf_bytes(im) if format == "gguf" else _dat_bytes(im)
    with atomic_output(path, force=force, suffix=".imatrix-tmp") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())


def _as_sums_counts(im: Imatrix, name: str) -> Tuple[np.ndarray, np.ndarray]:
    sums, counts = im.entries[name]
    if im.is_legacy:    # stored as mean * ncall: turn into sums over `ncall` tokens
        return np.asarray(sums, np.float32), np.asarray(counts, np.int64)
    return np.asarray(sums, np.float32), np.asarray(counts, np.int64)


def _gguf_bytes(im: Imatrix, alignment: int = 32) -> bytes:
    datasets = list(im.datasets)
    kv = [_gguf_string("general.type") + struct.pack("<I", 8) + _gguf_string("imatrix"),
          _gguf_string("imatrix.datasets") + struct.pack("<IIQ", 9, 8, len(datasets))
          + b"".join(_gguf_string(d) for d in datasets),
          _gguf_string("imatrix.chunk_count") + struct.pack("<II", 4, int(im.chunk_count) & 0xFFFFFFFF),
          _gguf_string("imatrix.chunk_size") + struct.pack("<II", 4, int(im.chunk_size) & 0xFFFFFFFF)]
    tensors = []
    for name in sorted(im.entries):
        sums, counts = _as_sums_counts(im, name)
        nmat = len(counts)
        if nmat == 0 or sums.size == 0:
            continue
        tensors.append((f"{name}.in_sum2", (sums.size // nmat, nmat), sums.astype("<f4")))
        tensors.append((f"{name}.counts", (1, nmat), counts.astype("<f4")))
    infos, datas, off = [], [], 0
    for tname, ne, arr in tensors:
        nd = len(ne)
        while nd > 1 and ne[nd - 1] == 1:
            nd -= 1
        nb = tname.encode("utf-8")
        infos.append(struct.pack("<Q", len(nb)) + nb + struct.pack(f"<I{nd}QIQ", nd, *ne[:nd], 0, off))
        b = arr.tobytes()
        b += b"\0" * (-len(b) % alignment)
        datas.append(b)
        off += len(b)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    head += b"\0" * (-len(head) % alignment)
    return head + b"".join(datas)


def _dat_bytes(im: Imatrix) -> bytes:
    chunk = max(int(im.chunk_size), 1)
    parts = []
    n = 0
    for name in sorted(im.entries):
        sums, counts = im.entries[name]
        sums = np.asarray(sums, np.float32)
        counts = np.asarray(counts, np.int64)
        if counts.size == 0 or not counts.any():
            continue
        if im.is_legacy:
            ncall, vals = int(counts[0]), sums
        else:
            ncall = int((counts.max() + chunk - 1) // chunk)
            ne0 = sums.size // counts.size
            c = np.repeat(counts.astype(np.float32), ne0)
            v = np.where(c == 0, np.float32(1), sums)
            c = np.where(c == 0, np.float32(1), c)
            vals = (v / c) * np.float32(ncall)
        nb = name.encode("utf-8")
        parts.append(struct.pack("<i", len(nb)) + nb + struct.pack("<ii", ncall, sums.size)
                     + vals.astype("<f4").tobytes())
        n += 1
    ds = im.datasets[-1].encode("utf-8") if im.datasets else b""
    return (struct.pack("<i", n) + b"".join(parts) + struct.pack("<i", int(im.chunk_count))
            + struct.pack("<i", len(ds)) + ds)


# ---------------------------------------------------------------------------
# computing one

class ImatrixCollector:
    """Accumulate per-column sums of x^2 of each linear layer's input, as llama-imatrix does.

    >>> col = ImatrixCollector(dataset="calib.txt")
    >>> col.update("blk.0.attn_q.weight", x)           # x: (..., n_in) activations entering that weight
    >>> col.save("imatrix.gguf")                        # llama-imatrix's GGUF format

    Sums are accumulated in float64 and stored as float32. ``n_experts``/``expert``
    handle 3-D expert tensors (one sum and count per expert). ``chunk_size`` is
    recorded as ``imatrix.chunk_size`` (llama-imatrix's context length; default
    512) and ``chunk_count`` is the number of full chunks the largest count covers.
    """

    def __init__(self, *, dataset: Optional[str] = None, chunk_size: int = 512):
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        self.datasets = [dataset] if dataset else []
        self._sums: Dict[str, np.ndarray] = {}
        self._counts: Dict[str, np.ndarray] = {}

    def update(self, name: str, x, *, expert: Optional[int] = None, n_experts: Optional[int] = None) -> None:
        """Add the activations ``x`` (..., n_in) that multiply the weight tensor ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        a = np.asarray(x)
        if a.dtype.kind not in "fiu" and a.dtype.name != "bfloat16":
            raise TypeError(f"{name}: activations must be numeric, got dtype {a.dtype}")
        if a.ndim == 0 or a.shape[-1] == 0:
            raise ValueError(f"{name}: activations need a last axis of input features, got shape {a.shape}")
        n_in = a.shape[-1]
        a = a.reshape(-1, n_in).astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: activations contain NaN or Inf")
        n_mat = 1 if n_experts is None else int(n_experts)
        e = 0 if expert is None else int(expert)
        if n_mat < 1 or not 0 <= e < n_mat:
            raise ValueError(f"{name}: expert {expert} out of range for n_experts={n_experts}")
        if name not in self._sums:
            self._sums[name] = np.zeros(n_mat * n_in, np.float64)
            self._counts[name] = np.zeros(n_mat, np.int64)
        elif self._sums[name].size != n_mat * n_in:
            raise ValueError(f"{name}: inconsistent size ({self._sums[name].size} values before, "
                             f"now {n_mat} x {n_in})")
        self._sums[name][e * n_in:(e + 1) * n_in] += np.einsum("ij,ij->j", a, a)
        self._counts[name][e] += a.shape[0]

    def hook(self, name: str):
        """A torch forward hook (``module.register_forward_hook(col.hook(name))``) feeding ``update``."""
        def fn(module, inputs, output):
            x = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
            self.update(name, x.detach().float().cpu().numpy())
        return fn

    def to_imatrix(self) -> Imatrix:
        if not self._sums:
            raise ValueError("no activations collected yet")
        mx = max(int(c.max()) for c in self._counts.values())
        return Imatrix({k: (self._sums[k].astype(np.float32), self._counts[k].copy()) for k in self._sums},
                       datasets=list(self.datasets), chunk_count=mx // self.chunk_size, chunk_size=self.chunk_size)

    def values(self, name: str) -> np.ndarray:
        return self.to_imatrix().values(name)

    def save(self, path, *, format: str = "gguf", force: bool = True) -> None:
        save_imatrix(path, self.to_imatrix(), format=format, force=force)

    def __len__(self) -> int:
        return len(self._sums)
