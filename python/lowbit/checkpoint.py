"""Quantize whole checkpoints: read safetensors, quantize tensor by tensor, write, report.

The schemes the CLI names (``int8``, ``int4``, ``ternary``, ``nf4``,
``gguf:Q8_0``...) live in a registry: each maps to a function of lowbit looked up
when it is used, so a scheme whose family is not in this build gives a clear
error instead of an ImportError at import time.

Output format (a plain safetensors file other tools can list):
- a kept tensor ``NAME`` is stored as is (same dtype, same bytes);
- a quantized tensor ``NAME`` is stored as ``NAME:codes``, ``NAME:scale`` and,
  when present, ``NAME:zero_point`` / ``NAME:codebook`` (the arrays of
  ``QTensor.to_dict()``), and its JSON record (``qmeta``) sits in the header's
  ``__metadata__`` under ``lowbit.qtensor:NAME``;
- ``__metadata__["format"] = "lowbit"``.
``lowbit.load`` rebuilds the QTensors with ``QTensor.from_dict``, which checks
every field (the file may be hostile).
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .io.safetensors import (RawTensor, SafetensorsError, SafetensorsFile, SafetensorsWriter,  # noqa: F401
                             TensorInfo, atomic_output)
from .qtensor import QTensor

__all__ = ["CheckpointError", "Checkpoint", "Scheme", "SCHEMES", "register_scheme", "get_scheme",
           "scheme_names", "parse_granularity", "parse_clip", "quantize_checkpoint", "load", "save",
           "Report", "tensor_error_stats", "DEFAULT_KEEP"]

FORMAT = "lowbit"
QMETA_PREFIX = "lowbit.qtensor:"
PIECES = ("codes", "scale", "zero_point", "codebook")
#: Name patterns kept in float by default even when 2-D (embeddings, norms, biases).
DEFAULT_KEEP = ("*embed*", "*norm*", "*bias*", "*.ln_*", "*.wte.*", "*.wpe.*")


class CheckpointError(ValueError):
    """A problem with a checkpoint or an option; the message is one line naming the file/option."""


def _lowbit():
    import lowbit
    return lowbit


def _lookup(path: str):
    """``lowbit.<path>`` at call time (importing a submodule if needed), or None when this build lacks it."""
    import importlib
    obj = _lowbit()
    for i, part in enumerate(path.split(".")):
        nxt = getattr(obj, part, None)
        if nxt is None and i == 0:
            try:
                nxt = importlib.import_module(f"lowbit.{part}")
            except ImportError:
                return None
        if nxt is None:
            return None
        obj = nxt
    return obj


# ---------------------------------------------------------------------------
# options: granularity and clip

def parse_granularity(text: Optional[str]) -> Optional[Tuple[str, Optional[int]]]:
    """``tensor`` | ``channel`` | ``group:N`` (``group`` alone = 128) -> (kind, group_size); None = scheme default."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("tensor", "per-tensor"):
        return ("tensor", None)
    if t in ("channel", "per-channel"):
        return ("channel", None)
    m = re.fullmatch(r"(?:per-)?group(?::(\d+))?", t)
    if m:
        g = int(m.group(1)) if m.group(1) else 128
        if g < 1:
            raise CheckpointError(f"--granularity {text!r}: group size must be >= 1")
        return ("group", g)
    raise CheckpointError(f"--granularity {text!r}: expected tensor, channel or group:N")


def parse_clip(text) -> Tuple[Optional[str], Optional[float]]:
    """``none`` | ``percentile[:P]`` | ``mse`` | ``kl`` -> (method, param)."""
    if text is None:
        return (None, None)
    t = str(text).strip().lower()
    if t == "none":
        return (None, None)
    m = re.fullmatch(r"percentile(?::(.+))?", t)
    if m:
        p = 99.99
        if m.group(1) is not None:
            try:
                p = float(m.group(1))
            except ValueError:
                raise CheckpointError(f"--clip {text!r}: the percentile must be a number") from None
        if not 0 < p <= 100:
            raise CheckpointError(f"--clip {text!r}: the percentile must be in (0, 100]")
        return ("percentile", p)
    if t in ("mse", "kl"):
        return (t, None)
    raise CheckpointError(f"--clip {text!r}: expected none, percentile:P, mse or kl")


def _axis_group(gran: Tuple[str, Optional[int]], ndim: int) -> Tuple[Optional[int], Optional[int]]:
    kind, g = gran
    if kind == "group" and ndim >= 1:
        return None, g
    if kind == "channel" and ndim >= 2:
        return 0, None
    return None, None


def _gran_text(gran: Tuple[str, Optional[int]]) -> str:
    return f"group:{gran[1]}" if gran[0] == "group" else gran[0]


# ---------------------------------------------------------------------------
# the scheme registry

@dataclass(frozen=True)
class Scheme:
    """One CLI scheme: ``build(w, axis, group_size, clip, clip_param)`` -> QTensor (or a GGUF blob).

    ``needs`` are the lowbit attributes ``build`` calls; they are looked up when
    the scheme is used, and a missing one is a clear error.
    """
    name: str
    description: str
    needs: Tuple[str, ...]
    build: Callable
    default_granularity: str = "channel"
    clip: bool = False             # accepts --clip
    granularity: bool = True       # accepts --granularity
    gguf_type: Optional[str] = None
    block: int = 1                 # GGUF block size: rows must be a multiple
    packages: Tuple[str, ...] = ()  # third-party packages the scheme needs (e.g. gguf to write .gguf)

    @property
    def output(self) -> str:
        return "gguf" if self.gguf_type else "safetensors"

    def missing(self) -> List[str]:
        return [n for n in self.needs if _lookup(n) is None]

    def require(self) -> None:
        """Raise CheckpointError unless this build can run the scheme (checked on a small probe tensor)."""
        miss = self.missing()
        if miss:
            raise CheckpointError(f"scheme {self.name!r} needs {', '.join('lowbit.' + m for m in miss)}, "
                                  "which this build of lowbit does not have")
        import importlib.util
        for pkg in self.packages:
            if importlib.util.find_spec(pkg) is None:
                raise CheckpointError(f"scheme {self.name!r} needs the {pkg!r} package: pip install 'lowbit[{pkg}]'")
        probe = np.linspace(-1, 1, 4 * 256, dtype=np.float32).reshape(4, 256)
        axis, gs = _axis_group(parse_granularity(self.default_granularity), 2)
        try:
            self.build(probe, axis, gs, None, None)
        except Exception as e:  # noqa: BLE001 - any failure of the probe means "not available"
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"scheme {self.name!r} is not available in this build of lowbit ({msg})") from None


SCHEMES: Dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Add (or replace) a CLI scheme."""
    SCHEMES[scheme.name] = scheme
    return scheme


def _maybe_pack(qt):
    """Sub-byte codes are stored bit-packed (SPEC 6) when this build can pack them."""
    if qt.packed is None and qt.bits < 8 and callable(getattr(qt, "pack", None)):
        return qt.pack()
    return qt


def _drop_zero_zero_point(qt):
    """Symmetric QTensors carry an all-zero zero-point array; a checkpoint need not store it
    (32 bits per group: 0.25 bits/weight at group:128). Dequantization is unchanged."""
    if isinstance(qt, QTensor) and qt.zero_point is not None and not qt.zero_point.any():
        import dataclasses
        return dataclasses.replace(qt, zero_point=None)
    return qt


def _affine(bits: int, symmetric: bool):
    def build(w, axis, group_size, clip, clip_param):
        qt = _lookup("quantize")(w, bits, scheme="absmax" if symmetric else "minmax", axis=axis,
                                 group_size=group_size, clip=clip, clip_param=clip_param)
        return _maybe_pack(qt)
    return build


def _extreme(fn: str, method: str):
    def build(w, axis, group_size, clip, clip_param):
        return _maybe_pack(_lookup(fn)(w, method=method, axis=axis, group_size=group_size))
    return build


def _codebook(scheme: str, bits: int):
    def build(w, axis, group_size, clip, clip_param):
        return _maybe_pack(_lookup("quantize")(w, bits, scheme=scheme, axis=axis, group_size=group_size))
    return build


def _gguf(qtype: str):
    def build(w, axis, group_size, clip, clip_param):
        return _lookup("gguf.quantize")(w, qtype)
    return build


for _b in range(2, 9):
    register_scheme(Scheme(f"int{_b}", f"{_b}-bit symmetric (absmax) integers", ("quantize",), _affine(_b, True),
                           default_granularity="channel" if _b == 8 else "group:128", clip=True))
    register_scheme(Scheme(f"uint{_b}", f"{_b}-bit asymmetric (min-max, zero point) integers", ("quantize",),
                           _affine(_b, False), default_granularity="channel" if _b == 8 else "group:128", clip=True))
for _m in ("absmean", "twn", "threshold"):
    register_scheme(Scheme("ternary" if _m == "absmean" else f"ternary:{_m}", f"ternary {{-1,0,+1}} ({_m})",
                           ("ternarize",), _extreme("ternarize", _m), default_granularity="tensor"))
for _m in ("sign", "bitnet"):
    register_scheme(Scheme("binary" if _m == "sign" else f"binary:{_m}", f"binary {{-1,+1}} ({_m})",
                           ("binarize",), _extreme("binarize", _m), default_granularity="tensor"))
register_scheme(Scheme("nf4", "4-bit NormalFloat codebook (QLoRA), per-block absmax", ("quantize",),
                       _codebook("nf4", 4), default_granularity="group:64"))
for _b in range(2, 9):
    register_scheme(Scheme(f"kmeans{_b}", f"{1 << _b}-entry k-means codebook", ("quantize",),
                           _codebook("kmeans", _b), default_granularity="tensor"))
for _t, _blk in (("Q8_0", 32), ("Q4_0", 32), ("Q4_1", 32), ("Q5_0", 32), ("Q5_1", 32), ("TQ1_0", 256),
                 ("TQ2_0", 256)):
    register_scheme(Scheme(f"gguf:{_t}", f"GGUF {_t} blocks (llama.cpp)", ("gguf.quantize", "gguf.write"),
                           _gguf(_t), default_granularity="tensor", granularity=False, gguf_type=_t, block=_blk,
                           packages=("gguf",)))


def scheme_names() -> List[str]:
    return list(SCHEMES)


def get_scheme(name: str) -> Scheme:
    """The registered scheme (raises CheckpointError listing the known ones)."""
    if isinstance(name, Scheme):
        return name
    s = SCHEMES.get(str(name)) or SCHEMES.get(str(name).lower())
    if s is None and str(name).lower().startswith("gguf:"):
        s = SCHEMES.get("gguf:" + str(name)[5:].upper())
    if s is None:
        raise CheckpointError(f"unknown scheme {name!r}; known: {', '.join(SCHEMES)}")
    return s


# ---------------------------------------------------------------------------
# input checkpoints

class Checkpoint:
    """The tensors of a .safetensors file, a sharded folder (model.safetensors.index.json)
    or a folder of .safetensors files, under one name space. Reads are memory-mapped."""

    INDEX = "model.safetensors.index.json"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.files: List[SafetensorsFile] = []
        self._where: Dict[str, SafetensorsFile] = {}
        self.metadata: Dict[str, str] = {}
        try:
            if os.path.isdir(self.path):
                self._open_folder()
            elif os.path.exists(self.path):
                f = SafetensorsFile(self.path)
                self.files.append(f)
                self.metadata = dict(f.metadata)
                self._where = {n: f for n in f.tensors}
            else:
                raise CheckpointError(f"{self.path}: no such file or folder")
        except BaseException:
            self.close()
            raise

    def _open_folder(self) -> None:
        index = os.path.join(self.path, self.INDEX)
        if os.path.exists(index):
            self._open_index(index)
            return
        names = sorted(n for n in os.listdir(self.path) if n.endswith(".safetensors"))
        if not names:
            raise CheckpointError(f"{self.path}: folder holds no .safetensors files and no {self.INDEX}")
        for n in names:
            f = SafetensorsFile(os.path.join(self.path, n))
            self.files.append(f)
            for t in f.tensors:
                if t in self._where:
                    raise CheckpointError(f"{f.path}: tensor {t!r} is also in {self._where[t].path}")
                self._where[t] = f
        self.metadata = dict(self.files[0].metadata)

    def _open_index(self, index: str) -> None:
        try:
            with open(index, "rb") as fh:
                raw = fh.read(64 << 20)
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{index}: not valid JSON ({str(e).splitlines()[0]})") from None
        wm = obj.get("weight_map") if isinstance(obj, dict) else None
        if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
            raise CheckpointError(f"{index}: 'weight_map' must map tensor names to shard file names")
        shards: Dict[str, SafetensorsFile] = {}
        for shard in dict.fromkeys(wm.values()):
            if os.path.basename(shard) != shard or shard in ("", ".", ".."):
                raise CheckpointError(f"{index}: shard {shard!r} is not a plain file name in the folder")
            p = os.path.join(self.path, shard)
            if not os.path.isfile(p):
                raise CheckpointError(f"{index}: shard {shard!r} is missing")
            shards[shard] = SafetensorsFile(p)
            self.files.append(shards[shard])
        for t, shard in wm.items():
            if t not in shards[shard].tensors:
                raise CheckpointError(f"{index}: tensor {t!r} is missing from shard {shard!r}")
            self._where[t] = shards[shard]
        for shard, f in shards.items():
            extra = [t for t in f.tensors if wm.get(t) != shard]
            if extra:
                raise CheckpointError(f"{f.path}: holds tensor {extra[0]!r}, which {self.INDEX} does not map "
                                      "to this shard")
        if self.files:
            self.metadata = dict(self.files[0].metadata)
        md = obj.get("metadata")
        if isinstance(md, dict):
            self.metadata.update({str(k): str(v) for k, v in md.items() if k != "total_size"})

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self.files:
            f.close()

    def names(self) -> List[str]:
        return list(self._where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def file_of(self, name: str) -> SafetensorsFile:
        try:
            return self._where[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def info(self, name: str) -> TensorInfo:
        return self.file_of(name).info(name)

    def get(self, name: str, *, float32: bool = False) -> np.ndarray:
        return self.file_of(name).get(name, float32=float32)

    def raw_tensor(self, name: str) -> RawTensor:
        return self.file_of(name).raw_tensor(name)

    @property
    def is_lowbit(self) -> bool:
        return self.metadata.get("format") == FORMAT

    def paths(self) -> List[str]:
        return [f.path for f in self.files]

    @property
    def nbytes(self) -> int:
        return sum(self.info(n).nbytes for n in self._where)


# ---------------------------------------------------------------------------
# error statistics and the report

def tensor_error_stats(w: np.ndarray, w_hat: np.ndarray, chunk: int = 1 << 16) -> Dict[str, float]:
    """SQNR (dB), MSE and max |error| of ``w_hat`` against ``w``, accumulated in float64, chunked."""
    a = np.asarray(w, np.float32).reshape(-1)
    b = np.asarray(w_hat, np.float32).reshape(-1)
    sig = noise = 0.0
    mx = 0.0
    # plain NumPy reductions (pairwise sums in float64), not np.dot: BLAS threads
    # can be very slow on a busy machine, and this is a small part of the work
    for i in range(0, a.size, chunk):
        x = a[i:i + chunk].astype(np.float64)
        d = b[i:i + chunk].astype(np.float64)
        d -= x
        sig += float(np.add.reduce(x * x))
        noise += float(np.add.reduce(d * d))
        if d.size:
            mx = max(mx, float(np.maximum(d.max(), -d.min())))
    n = max(a.size, 1)
    if noise == 0.0:
        sqnr = math.inf
    elif sig == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(sig / noise)
    return {"sqnr_db": sqnr, "mse": noise / n, "max_abs_err": mx, "signal_power": sig / n}


@dataclass
class Report:
    """Per-tensor rows and totals of one checkpoint quantization."""
    input: str
    output: Optional[str]
    scheme: str
    options: Dict[str, object]
    rows: List[Dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def quantized(self) -> List[Dict[str, object]]:
        return [r for r in self.rows if r["action"] == "quantized"]

    def totals(self) -> Dict[str, object]:
        q = self.quantized
        before = sum(int(r["bytes_before"]) for r in self.rows)
        after = sum(int(r["bytes_after"]) for r in self.rows)
        qb = sum(int(r["bytes_before"]) for r in q)
        qa = sum(int(r["bytes_after"]) for r in q)
        n_w = sum(int(r["numel"]) for r in q)
        sig = sum(float(r["signal_power"]) * int(r["numel"]) for r in q)
        noise = sum(float(r["mse"]) * int(r["numel"]) for r in q)
        sqnr = (math.inf if noise == 0 else 10 * math.log10(sig / noise) if sig > 0 else -math.inf) if q else None
        return {
            "tensors": len(self.rows), "quantized": len(q),
            "kept": sum(r["action"] == "kept" for r in self.rows),
            "dropped": sum(r["action"] == "dropped" for r in self.rows),
            "bytes_before": before, "bytes_after": after,
            "ratio": before / after if after else None,
            "quantized_bytes_before": qb, "quantized_bytes_after": qa,
            "bits_per_weight": 8.0 * qa / n_w if n_w else None,
            "sqnr_db": sqnr, "mse": noise / n_w if n_w else None,
            "max_abs_err": max((float(r["max_abs_err"]) for r in q), default=None),
            "seconds": self.seconds,
            "tensors_per_s": len(self.rows) / self.seconds if self.seconds > 0 else None,
            "mb_per_s": before / 1e6 / self.seconds if self.seconds > 0 else None,
        }

    def to_json(self) -> Dict[str, object]:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v
        return clean({"input": self.input, "output": self.output, "scheme": self.scheme, "options": self.options,
                      "totals": self.totals(), "tensors": self.rows})

    def save(self, path, *, force: bool = True) -> None:
        """Write the JSON report (atomically)."""
        with atomic_output(path, force=force, suffix=".json-tmp") as tmp:
            with open(tmp, "w") as fh:
                json.dump(self.to_json(), fh, indent=1)
                fh.write("\n")

    def table(self, *, all_rows: bool = True, max_name: int = 48) -> str:
        """The per-tensor table as text (kept tensors listed too unless ``all_rows=False``)."""
        hdr = ("tensor", "shape", "scheme", "bits/w", "SQNR dB", "MSE", "max|err|", "bytes before", "after")
        lines = []
        for r in self.rows:
            if r["action"] != "quantized" and not all_rows:
                continue
            name = str(r["name"])
            if len(name) > max_name:
                name = "…" + name[-(max_name - 1):]
            shape = "x".join(str(s) for s in r["shape"]) or "scalar"
            if r["action"] == "quantized":
                sq = r["sqnr_db"]
                lines.append((name, shape, str(r["scheme"]), f"{r['bits_per_weight']:.3g}",
                              "inf" if sq == math.inf else f"{sq:.2f}", f"{r['mse']:.3g}", f"{r['max_abs_err']:.3g}",
                              _size(r["bytes_before"]), _size(r["bytes_after"])))
            elif r["action"] == "dropped":
                lines.append((name, shape, f"dropped ({r['dtype']})", "", "", "", "", _size(r["bytes_before"]), "0 B"))
            else:
                lines.append((name, shape, f"keep ({r['dtype']})", f"{8 * r['bytes_before'] / max(r['numel'], 1):.3g}",
                              "", "", "", _size(r["bytes_before"]), _size(r["bytes_after"])))
        t = self.totals()
        sq = t["sqnr_db"]
        total = ("TOTAL", f"{t['quantized']} quantized, {t['kept']} kept"
                 + (f", {t['dropped']} dropped" if t["dropped"] else ""), self.scheme,
                 "" if t["bits_per_weight"] is None else f"{t['bits_per_weight']:.3g}",
                 "" if sq is None else ("inf" if sq == math.inf else f"{sq:.2f}"),
                 "" if t["mse"] is None else f"{t['mse']:.3g}",
                 "" if t["max_abs_err"] is None else f"{t['max_abs_err']:.3g}",
                 _size(t["bytes_before"]), _size(t["bytes_after"]))
        rows = [hdr] + lines + [total]
        widths = [max(len(r[i]) for r in rows) for i in range(len(hdr))]
        right = {3, 4, 5, 6, 7, 8}

        def fmt(r):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        sep = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(hdr), sep] + [fmt(r) for r in lines] + [sep, fmt(total)])

    def summary(self) -> str:
        t = self.totals()
        s = (f"{t['quantized']} of {t['tensors']} tensors quantized with {self.scheme}: "
             f"{_size(t['bytes_before'])} -> {_size(t['bytes_after'])}")
        if t["ratio"]:
            s += f" ({t['ratio']:.2f}x smaller)"
        if t["sqnr_db"] is not None:
            s += f"; quantized weights at {t['bits_per_weight']:.3g} bits/weight, SQNR {t['sqnr_db']:.2f} dB"
        if t["seconds"]:
            s += (f"; {t['seconds']:.2f} s ({t['tensors_per_s']:.1f} tensors/s, "
                  f"{t['mb_per_s']:.1f} MB/s)")
        return s


def _size(n) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"


# ---------------------------------------------------------------------------
# selection

def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(name: str, info: TensorInfo, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether ``name`` is quantized: --exclude wins, then --include, then the default
    (2-D floating-point tensors whose name is not an embedding, norm or bias)."""
    if not info.is_float or info.size == 0:
        return False
    if _matches(name, exclude):
        return False
    if _matches(name, include):
        return True
    return len(info.shape) == 2 and not _matches(name.lower(), DEFAULT_KEEP)


# ---------------------------------------------------------------------------
# quantize_checkpoint

ProgressFn = Callable[[int, int, int, int, str], None]   # (done, total, bytes_done, bytes_total, name)


def _resolve_options(scheme, granularity, clip):
    spec = get_scheme(scheme)
    gran = parse_granularity(granularity)
    if gran is not None and not spec.granularity:
        raise CheckpointError(f"scheme {spec.name!r} has a fixed block layout; --granularity does not apply")
    gran = gran or parse_granularity(spec.default_granularity)
    clip_m, clip_p = parse_clip(clip)
    if clip_m is not None and not spec.clip:
        raise CheckpointError(f"scheme {spec.name!r} does not take --clip (only the int/uint schemes do)")
    spec.require()
    if clip_m is not None:
        if _lookup("calibrate") is None:
            raise CheckpointError(f"--clip {clip}: calibrated clipping (lowbit.calibrate) is not in this build")
        probe = np.linspace(-1, 1, 4 * 256, dtype=np.float32).reshape(4, 256)
        try:   # fail before any work if this build cannot clip this way
            spec.build(probe, *_axis_group(gran, 2), clip_m, clip_p)
        except Exception as e:  # noqa: BLE001 - any failure here means "not available"
            raise CheckpointError(f"--clip {clip} does not work in this build of lowbit "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return spec, gran, clip_m, clip_p


def quantize_checkpoint(src, out, scheme: str = "int8", *, granularity: Optional[str] = None, clip: str = "none",
                        include: Sequence[str] = (), exclude: Sequence[str] = (), force: bool = False,
                        report: Optional[str] = None, progress: Optional[ProgressFn] = None) -> Report:
    """Quantize the checkpoint at ``src`` into ``out`` (.safetensors, or .gguf for gguf:* schemes).

    ``scheme``: a name from :func:`scheme_names` (int8, int4, uint4, ternary, binary,
    nf4, kmeans4, gguf:Q8_0, ...). ``granularity``: ``tensor`` | ``channel`` |
    ``group:N`` (default: the scheme's). ``clip``: ``none`` | ``percentile:P`` |
    ``mse`` | ``kl``. ``include``/``exclude``: glob patterns on tensor names
    overriding the default choice (2-D float weights except embeddings, norms and
    biases). ``out`` existing is refused unless ``force``. ``report``: a JSON path.
    ``progress(done, total, bytes_done, bytes_total, name)`` is called after each tensor.
    Returns the :class:`Report`. Raises CheckpointError / SafetensorsError
    (both ValueError) with a one-line message naming the file and the problem.
    """
    spec, gran, clip_m, clip_p = _resolve_options(scheme, granularity, clip)
    include, exclude = tuple(include or ()), tuple(exclude or ())
    out = os.path.abspath(os.fspath(out))
    ext = os.path.splitext(out)[1].lower()
    want = ".gguf" if spec.output == "gguf" else ".safetensors"
    if ext != want:
        raise CheckpointError(f"{out}: scheme {spec.name!r} writes {want} files; name OUT *{want}")
    t0 = time.perf_counter()
    with Checkpoint(src) as ck:
        if ck.is_lowbit:
            raise CheckpointError(f"{src}: is already quantized by lowbit; quantize the original checkpoint")
        for p in ck.paths():
            if os.path.exists(out) and os.path.samefile(p, out):
                raise CheckpointError(f"{out}: is also the input; choose another OUT")
        atomic_output(out, force=force).check()
        if report is not None:
            atomic_output(report, force=True).check()   # a bad --report path fails before the work
        names = ck.names()
        if not any(select(n, ck.info(n), include, exclude) for n in names):
            raise CheckpointError(f"{src}: no tensor selected for quantization (check --include/--exclude)")
        rep = Report(input=os.fspath(src), output=out, scheme=spec.name,
                     options={"granularity": None if spec.output == "gguf" else _gran_text(gran),
                              "clip": clip if clip_m else "none", "include": list(include), "exclude": list(exclude)})
        total_bytes = ck.nbytes
        done_bytes = 0
        if spec.output == "gguf":
            sink = _GGUFSink(out, force, spec, ck)
        else:
            sink = _LowbitWriter(out, force=force, metadata={
                "format": FORMAT, "lowbit.version": _lowbit().__version__, "lowbit.scheme": spec.name,
                "lowbit.source_metadata": json.dumps(ck.metadata, sort_keys=True)})
        with sink:
            for i, name in enumerate(names):
                info = ck.info(name)
                t1 = time.perf_counter()
                row: Dict[str, object] = {"name": name, "shape": list(info.shape), "dtype": info.dtype,
                                          "numel": info.size, "bytes_before": info.nbytes}
                fits = spec.block == 1 or (len(info.shape) >= 1 and info.shape[-1] % spec.block == 0)
                if select(name, info, include, exclude) and fits:
                    w = ck.get(name, float32=True)
                    axis, gs = _axis_group(gran, w.ndim)
                    try:
                        q = spec.build(w, axis, gs, clip_m, clip_p)
                    except (ValueError, TypeError) as e:
                        raise CheckpointError(f"{ck.file_of(name).path}: tensor {name!r}: "
                                              f"{str(e).splitlines()[0]}") from None
                    q = _drop_zero_zero_point(q)
                    w_hat = sink.dequantize(q, info.shape) if spec.output == "gguf" else q.dequantize()
                    stats = tensor_error_stats(w, w_hat)
                    del w_hat
                    nbytes = sink.add_quantized(name, q, info)
                    row.update(action="quantized", scheme=spec.name,
                               granularity=None if spec.output == "gguf" else (
                                   q.granularity if isinstance(q, QTensor) else _gran_text(gran)),
                               bits_per_weight=8.0 * nbytes / max(info.size, 1), bytes_after=nbytes, **stats)
                else:
                    nbytes, dropped = sink.add_kept(name, ck)
                    if dropped:
                        row.update(action="dropped", scheme="drop", bytes_after=0, note=dropped)
                    else:
                        row.update(action="kept", scheme="keep", bytes_after=nbytes)
                    if not fits and select(name, info, include, exclude):
                        row["note"] = (f"kept: row length {info.shape[-1] if info.shape else 1} is not a multiple "
                                       f"of the block ({spec.block})")
                row["seconds"] = time.perf_counter() - t1
                rep.rows.append(row)
                done_bytes += info.nbytes
                if progress is not None:
                    progress(i + 1, len(names), done_bytes, total_bytes, name)
            rep.seconds = time.perf_counter() - t0
        rep.seconds = time.perf_counter() - t0
    if report is not None:
        rep.save(report)
    return rep


class _LowbitWriter(SafetensorsWriter):
    """A safetensors writer that stores QTensors as pieces + a qmeta record in __metadata__."""

    def add_quantized(self, name: str, qt: QTensor, info: Optional[TensorInfo] = None) -> int:
        d = qt.to_dict()
        self.metadata[QMETA_PREFIX + name] = bytes(d.pop("qmeta")).decode()
        n = 0
        for piece, arr in d.items():
            self.add(f"{name}:{piece}", arr)
            n += arr.nbytes
        return n

    def add_kept(self, name: str, ck: Checkpoint) -> Tuple[int, Optional[str]]:
        self.add(name, ck.raw_tensor(name))
        return ck.info(name).nbytes, None


class _GGUFSink:
    """Collects GGUF blobs and kept float tensors, then writes one .gguf file with lowbit.gguf.write.

    GGUF holds the quantized blocks and float tensors (F16 stays F16, other floats
    become F32); integer tensors (e.g. position ids) cannot go through the writer
    and are dropped, which the report says. Memory: the quantized model plus the
    kept tensors (the gguf package writes from memory).
    """

    def __init__(self, out, force, spec: Scheme, ck: Checkpoint):
        self.out = atomic_output(out, force=force, suffix=".gguf-tmp")
        self.spec = spec
        self.source_metadata = dict(ck.metadata)
        self.tensors: Dict[str, object] = {}

    def __enter__(self):
        self.tmp = self.out.__enter__()
        return self

    def dequantize(self, blob, shape):
        return _lookup("gguf.dequantize")(blob, self.spec.gguf_type, tuple(shape))

    def add_quantized(self, name, blob, info) -> int:
        self.tensors[name] = (blob, self.spec.gguf_type, tuple(info.shape))
        return int(np.asarray(blob).nbytes)

    def add_kept(self, name, ck: Checkpoint) -> Tuple[int, Optional[str]]:
        info = ck.info(name)
        if not info.is_float:
            return 0, f"dropped: GGUF output holds float tensors only, not {info.dtype}"
        a = ck.get(name)
        a = a if a.dtype == np.float16 else np.asarray(a, np.float32)
        self.tensors[name] = a
        return a.nbytes, None

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                _lookup("gguf.write")(self.tmp, self.tensors, metadata={
                    "general.quantized_by": "lowbit", "lowbit.scheme": self.spec.name})
                try:   # the writer's own temporary file is 0600; give OUT the usual permissions
                    mask = os.umask(0)
                    os.umask(mask)
                    os.chmod(self.tmp, 0o666 & ~mask)
                except OSError:
                    pass
        except BaseException:
            import sys
            self.out.__exit__(*sys.exc_info())
            raise
        return self.out.__exit__(exc_type, exc, tb)


# ---------------------------------------------------------------------------
# load / save

def save(path, tensors: Mapping[str, Union[QTensor, np.ndarray]], *, metadata: Optional[Mapping[str, str]] = None,
         force: bool = False) -> None:
    """Write QTensors and plain arrays to one safetensors file (atomically; ``force`` to overwrite)."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a dict of name -> QTensor or array, got {type(tensors).__name__}")
    md = {str(k): str(v) for k, v in (metadata or {}).items()}
    md.update({"format": FORMAT, "lowbit.version": _lowbit().__version__})
    names = set(tensors)
    for name, v in tensors.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensor names must be non-empty strings, got {name!r}")
        if isinstance(v, QTensor):
            clash = [f"{name}:{p}" for p in PIECES if f"{name}:{p}" in names]
            if clash:
                raise ValueError(f"tensor name {clash[0]!r} clashes with the stored pieces of QTensor {name!r}")
    with _LowbitWriter(path, force=force, metadata=md) as w:
        for name, v in tensors.items():
            if isinstance(v, QTensor):
                w.add_quantized(name, v)
            elif isinstance(v, RawTensor):
                w.add(name, v)
            else:
                arr = np.asarray(v)
                if arr.dtype == object:
                    raise TypeError(f"tensor {name!r}: expected a QTensor or a numeric array, got {type(v).__name__}")
                w.add(name, arr)


def load(path) -> Dict[str, Union[QTensor, np.ndarray]]:
    """Read a checkpoint: QTensors for what lowbit quantized, plain arrays for the rest.

    Arrays are read-only views of a memory map where possible (BF16 is widened to
    float32). Accepts what :class:`Checkpoint` accepts. Every QTensor record is
    validated (``QTensor.from_dict``); problems raise CheckpointError naming the file.
    """
    with Checkpoint(path) as ck:
        out: Dict[str, Union[QTensor, np.ndarray]] = {}
        if not ck.is_lowbit:
            return {n: ck.get(n) for n in ck.names()}
        qnames = {k[len(QMETA_PREFIX):]: v for k, v in ck.metadata.items() if k.startswith(QMETA_PREFIX)}
        pieces: Dict[str, Dict[str, np.ndarray]] = {q: {} for q in qnames}
        for n in ck.names():
            base, sep, piece = n.rpartition(":")
            if sep and base in qnames:
                if piece not in PIECES:
                    raise CheckpointError(f"{ck.file_of(n).path}: tensor {n!r}: unknown QTensor piece {piece!r}")
                pieces[base][piece] = ck.get(n)
                out.setdefault(base, None)
            else:
                out[n] = ck.get(n)
        for q, meta in qnames.items():
            d = dict(pieces[q])
            d["qmeta"] = np.frombuffer(meta.encode(), np.uint8)
            try:
                out[q] = QTensor.from_dict(d)
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{ck.path}: quantized tensor {q!r}: {str(e).splitlines()[0]}") from None
        return out
