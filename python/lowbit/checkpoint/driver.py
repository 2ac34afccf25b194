"""``quantize_checkpoint``: read a checkpoint, quantize tensor by tensor, write, report."""
from __future__ import annotations

import fnmatch
import os
import time
from typing import Callable, Dict, Iterable, Optional, Sequence

from ..io.safetensors import TensorInfo, atomic_output
from ..qtensor import QTensor
from .format import CheckpointError
from .reader import Checkpoint
from .report import Report, tensor_error_stats
from .schemes import axis_group, get_scheme, granularity_text, parse_clip, parse_granularity
from .writers import open_writer

__all__ = ["quantize_checkpoint", "select", "resolve_options", "DEFAULT_KEEP", "ProgressFn"]

#: Name patterns kept in float by default even when 2-D (embeddings, norms, biases).
DEFAULT_KEEP = ("*embed*", "*norm*", "*bias*", "*.ln_*", "*.wte.*", "*.wpe.*")

ProgressFn = Callable[[int, int, int, int, str], None]   # (done, total, bytes_done, bytes_total, name)


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


def resolve_options(scheme, granularity, clip):
    """(scheme, granularity, clip method, clip parameter) from the CLI's words; CheckpointError if
    they do not fit together or the scheme needs a package that is not installed."""
    spec = get_scheme(scheme)
    gran = parse_granularity(granularity)
    if gran is not None and not spec.granularity:
        raise CheckpointError(f"scheme {spec.name!r} has a fixed block layout; --granularity does not apply")
    gran = gran or parse_granularity(spec.default_granularity)
    clip_m, clip_p = parse_clip(clip)
    if clip_m is not None and not spec.clip:
        raise CheckpointError(f"scheme {spec.name!r} does not take --clip (only the int/uint schemes do)")
    spec.require()
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
    spec, gran, clip_m, clip_p = resolve_options(scheme, granularity, clip)
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
                     options={"granularity": None if spec.output == "gguf" else granularity_text(gran),
                              "clip": clip if clip_m else "none", "include": list(include), "exclude": list(exclude)})
        total_bytes = ck.nbytes
        done_bytes = 0
        with open_writer(out, force, spec, ck) as sink:
            for i, name in enumerate(names):
                info = ck.info(name)
                t1 = time.perf_counter()
                row: Dict[str, object] = {"name": name, "shape": list(info.shape), "dtype": info.dtype,
                                          "numel": info.size, "bytes_before": info.nbytes}
                fits = spec.block == 1 or (len(info.shape) >= 1 and info.shape[-1] % spec.block == 0)
                if select(name, info, include, exclude) and fits:
                    w = ck.get(name, float32=True)
                    axis, gs = axis_group(gran, w.ndim)
                    try:
                        q = spec.build(w, axis, gs, clip_m, clip_p)
                    except (ValueError, TypeError) as e:
                        raise CheckpointError(f"{ck.file_of(name).path}: tensor {name!r}: "
                                              f"{str(e).splitlines()[0]}") from None
                    w_hat = sink.dequantize(q, info.shape)
                    stats = tensor_error_stats(w, w_hat)
                    del w_hat
                    nbytes = sink.add_quantized(name, q, info)
                    row.update(action="quantized", scheme=spec.name,
                               granularity=None if spec.output == "gguf" else (
                                   q.granularity if isinstance(q, QTensor) else granularity_text(gran)),
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

