"""Quantize a torch model's linear layers in place, save and load the result.

- :func:`quantize_model` replaces ``nn.Linear`` modules with lowbit modules.
- :func:`save_quantized` writes one safetensors file (no pickle): every quantized
  module's codes and scales in lowbit's canonical layouts (QTensor / SPEC 6
  records), plus the model's remaining float tensors, plus a checksum of each.
- :func:`load_quantized` rebuilds those modules into a float skeleton of the same
  architecture without requantizing: outputs are bit-identical. Everything is
  read and checked first; a corrupted or mismatched file raises ValueError
  naming the module (or tensor) and leaves the model unchanged.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..io.safetensors import RawTensor, SafetensorsFile, SafetensorsWriter, dtype_name
from .modules import BitLinear, Linear, LowbitModule, WeightOnlyLinear

__all__ = ["quantize_model", "save_quantized", "load_quantized", "DEFAULT_EXCLUDE", "SCHEMES",
           "quantized_modules", "select_linears", "calibrate_inputs"]

#: Module-name patterns skipped unless ``include`` names them: embeddings and output heads
#: (a vocabulary projection or classifier is where quantization error hurts most).
DEFAULT_EXCLUDE = ("*embed*", "lm_head", "*.lm_head", "*classifier*", "head", "*.head", "score", "*.score",
                   "output", "output_layer", "*.output_layer")

#: Schemes with an integer kernel; any other ``lowbit quantize`` scheme (int4, nf4, kmeans4 ...)
#: gives a :class:`WeightOnlyLinear`.
SCHEMES = {
    "int8": "int8 weights per output channel + int8 per-token activations (lowbit.Linear, int16 kernel)",
    "int8-u7": "7-bit weights per output channel + int8 per-token activations (lowbit.Linear bits=7, u7 kernel)",
    "ternary": "ternary weights, absmean (BitNet b1.58), one scale per tensor; int8 per-token activations",
    "ternary:twn": "ternary weights, TWN threshold",
    "ternary:threshold": "ternary weights, fixed threshold 0.5 * mean|w|",
    "binary": "binary weights, sign with mean|w| scale; int8 per-token activations",
    "binary:bitnet": "binary weights, BitNet (centred) sign",
}

FORMAT = "lowbit.torch"
VERSION = 1
_META_KEY = "lowbit.torch"


def _as_list(patterns, what: str) -> Tuple[str, ...]:
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        return (patterns,)
    out = tuple(patterns)
    if not all(isinstance(p, str) for p in out):
        raise TypeError(f"{what} must be a glob pattern or a list of them, got {patterns!r}")
    return out


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _tied_to_embedding(model: torch.nn.Module) -> set:
    """ids of parameters shared with an nn.Embedding (tied output heads)."""
    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}


def _parent(model: torch.nn.Module, name: str) -> Tuple[torch.nn.Module, str]:
    head, _, leaf = name.rpartition(".")
    return (model.get_submodule(head) if head else model), leaf


def _builder(scheme: str, granularity: Optional[str], smoothing: float = 0.5):
    if not isinstance(scheme, str):
        raise TypeError(f"scheme must be a str, got {type(scheme).__name__}")
    if scheme in ("int8", "int8-u7"):
        if granularity not in (None, "channel"):
            raise ValueError(f"scheme {scheme!r} has one weight scale per output channel (the kernel's); "
                             f"granularity={granularity!r} is not available")
        bits = 8 if scheme == "int8" else 7
        return lambda lin, amax=None: Linear.from_linear(lin, bits=bits, input_absmax=amax, smoothing=smoothing)
    kind, _, method = scheme.partition(":")
    if kind in ("ternary", "binary"):
        if granularity not in (None, "tensor", "channel"):
            raise ValueError(f"scheme {scheme!r}: granularity must be 'tensor' or 'channel', got {granularity!r}")
        axis = 0 if granularity == "channel" else None
        binary = kind == "binary"
        ok = ("sign", "bitnet") if binary else ("absmean", "twn", "threshold")
        if method and method not in ok:
            raise ValueError(f"unknown {kind} method {method!r}; known: {', '.join(ok)}")
        return lambda lin, amax=None: BitLinear.from_linear(lin, binary=binary, method=method or None, axis=axis)
    from ..checkpoint import CheckpointError, get_scheme
    try:
        spec = get_scheme(scheme)
    except CheckpointError as e:
        raise ValueError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)} or a weight-only scheme of "
                         f"`lowbit quantize` ({e})") from None
    if spec.output != "safetensors":
        raise ValueError(f"scheme {scheme!r} produces GGUF blocks; lowbit.torch takes {', '.join(SCHEMES)} or "
                         "lowbit's own weight-only schemes (int4, uint4, nf4, kmeans4, ...)")
    return lambda lin, amax=None: WeightOnlyLinear.from_linear(lin, spec.name, granularity=granularity)


def select_linears(model: torch.nn.Module, include=None, exclude=None) -> List[str]:
    """Names of the ``nn.Linear`` modules :func:`quantize_model` would replace.

    ``exclude`` patterns always win. With ``include`` only matching modules are
    taken (embeddings and heads too, if a pattern names them); without it every
    ``nn.Linear`` except :data:`DEFAULT_EXCLUDE` names and heads tied to an
    embedding. Patterns are ``fnmatch`` globs over the names of ``model.named_modules()``.
    """
    inc, exc = _as_list(include, "include"), _as_list(exclude, "exclude")
    tied = _tied_to_embedding(model)
    linears = [(n, m) for n, m in model.named_modules() if type(m) is torch.nn.Linear]
    if inc:
        unmatched = [p for p in inc if not any(fnmatch.fnmatchcase(n, p) for n, _ in linears)]
        if unmatched:
            raise ValueError(f"include pattern(s) {unmatched} match no nn.Linear module of the model "
                             f"(its linear modules are e.g. {[n for n, _ in linears[:4]]})")
    out = []
    for name, mod in linears:
        if _matches(name, exc):
            continue
        if inc:
            if _matches(name, inc):
                out.append(name)
        elif not _matches(name.lower(), DEFAULT_EXCLUDE) and id(mod.weight) not in tied:
            out.append(name)
    return out


def calibrate_inputs(model: torch.nn.Module, names: Sequence[str], calibrate) -> Dict[str, torch.Tensor]:
    """Run ``calibrate(model)`` and return max |x| per input feature of each named linear module."""
    stats: Dict[str, torch.Tensor] = {}

    def hook(name):
        def record(mod, args):
            x = args[0].detach()
            m = x.reshape(-1, x.shape[-1]).abs().amax(0).to(torch.float32) if x.numel() else None
            if m is not None:
                stats[name] = torch.maximum(stats[name], m) if name in stats else m
        return record
    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            calibrate(model)
    finally:
        for h in handles:
            h.remove()
    unseen = [n for n in names if n not in stats]
    if unseen:
        raise ValueError(f"calibrate(model) never ran module {unseen[0]!r}"
                         + (f" (and {len(unseen) - 1} more)" if len(unseen) > 1 else ""))
    return stats


def quantize_model(model: torch.nn.Module, scheme: str = "int8", *, include=None, exclude=None,
                   granularity: Optional[str] = None, calibrate=None, smoothing: float = 0.5) -> torch.nn.Module:
    """Replace the model's ``nn.Linear`` modules in place with lowbit modules; returns ``model``.

    scheme: ``"int8"`` (:class:`Linear`, 8-bit weights: most accurate),
    ``"int8-u7"`` (7-bit weights on the faster u7 kernel), ``"ternary"`` /
    ``"binary"`` (and ``"ternary:twn"``, ``"binary:bitnet"`` ...: :class:`BitLinear`),
    or any weight-only scheme of ``lowbit quantize`` such as ``"int4"``,
    ``"nf4"``, ``"kmeans4"`` (:class:`WeightOnlyLinear`: dequantized on the fly).
    ``include`` / ``exclude``: glob pattern(s) over module names (see
    :func:`select_linears`). ``granularity``: ``"tensor"`` / ``"channel"`` for
    ternary/binary (default tensor), ``"group:N"`` etc. for weight-only schemes.

    ``calibrate`` (int8 schemes): a function called once as ``calibrate(model)`` on the
    float model to run representative inputs through it (e.g. ``lambda m: m(**batch)``);
    the largest |x| per input feature of each selected layer is recorded and used to
    smooth activation outliers into the weights (SmoothQuant, strength ``smoothing``).
    Calibrate on data other than what you evaluate on.

    Every new module is built before any is swapped in, so an error leaves the model as it was.
    Float weights of any dtype (float32, bfloat16, float16) are widened exactly to float32 first.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if type(model) is torch.nn.Linear:
        raise ValueError("model is itself an nn.Linear and cannot be replaced in place: wrap it "
                         "(torch.nn.Sequential(linear)) or use lowbit.torch.Linear.from_linear")
    build = _builder(scheme, granularity, smoothing)
    if calibrate is not None and scheme not in ("int8", "int8-u7"):
        raise ValueError(f"calibrate= smooths activations for the int8 schemes; scheme {scheme!r} does not use it")
    if calibrate is not None and not callable(calibrate):
        raise TypeError(f"calibrate must be a function of the model, got {type(calibrate).__name__}")
    names = select_linears(model, include, exclude)
    if not names:
        raise ValueError("no nn.Linear module selected" + (f" (include={include!r}, exclude={exclude!r})"
                                                          if include or exclude else ""))
    for name in names:
        w = model.get_submodule(name).weight
        if w.device.type != "cpu":
            raise ValueError(f"module {name!r} is on {w.device}; lowbit runs on the CPU (model.cpu())")
    stats = calibrate_inputs(model, names, calibrate) if calibrate is not None else {}
    new = {}
    for name in names:
        try:
            new[name] = build(model.get_submodule(name), stats.get(name))
        except (ValueError, TypeError) as e:
            raise type(e)(f"module {name!r}: {e}") from None
    for name, mod in new.items():
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, mod)
    return model


def quantized_modules(model: torch.nn.Module) -> Dict[str, LowbitModule]:
    return {n: m for n, m in model.named_modules() if isinstance(m, LowbitModule)}


# ---------------------------------------------------------------------------
# save / load

def _raw(arr: np.ndarray) -> RawTensor:
    arr = np.ascontiguousarray(arr)
    return RawTensor(dtype_name(arr.dtype), tuple(arr.shape), arr.reshape(-1).view(np.uint8))


def _raw_torch(t: torch.Tensor) -> RawTensor:
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        return RawTensor("BF16", tuple(t.shape), t.view(torch.int16).numpy().reshape(-1).view(np.uint8))
    return _raw(t.numpy())


def _digest(items: Sequence[Tuple[str, RawTensor]]) -> str:
    h = hashlib.sha256()
    for key, r in sorted(items, key=lambda kv: kv[0]):
        h.update(json.dumps([key, r.dtype, list(r.shape), int(r.data.size)]).encode())
        h.update(memoryview(np.ascontiguousarray(r.data)))
    return h.hexdigest()


def _kind_of(mod: LowbitModule) -> dict:
    meta = mod.kind_meta()
    if isinstance(mod, BitLinear):
        meta["bits"] = mod.bits
    return meta


def save_quantized(model: torch.nn.Module, path: Union[str, os.PathLike], *, force: bool = True) -> None:
    """Write the quantized model to one safetensors file (atomically, no pickle).

    Stored: each lowbit module's codes, scales and bias (``q/<module>/...``), every
    other tensor of ``model.state_dict()`` in its own dtype (``f/<name>``), and in the
    header's metadata a JSON record of the modules and a SHA-256 of each entry.
    """
    mods = quantized_modules(model)
    if not mods:
        raise ValueError("the model has no lowbit modules: quantize it first (lowbit.torch.quantize_model)")
    modules_meta, floats_meta = {}, {}
    entries: List[Tuple[str, RawTensor]] = []
    for name, mod in mods.items():
        items = [(k, _raw(v)) for k, v in mod.state().items()]
        meta = _kind_of(mod)
        meta["sha256"] = _digest(items)
        modules_meta[name] = meta
        entries += [(f"q/{name}/{k}", r) for k, r in items]
    for key, t in model.state_dict().items():
        r = _raw_torch(t)
        floats_meta[key] = _digest([("", r)])
        entries.append((f"f/{key}", r))
    header = {"format": FORMAT, "version": VERSION, "modules": modules_meta, "floats": floats_meta}
    with SafetensorsWriter(path, force=force, metadata={_META_KEY: json.dumps(header, sort_keys=True)}) as w:
        for key, r in entries:
            w.add(key, r)


class _Plan:
    """What load_quantized will do, fully checked before it touches the model."""

    def __init__(self):
        self.modules: Dict[str, LowbitModule] = {}
        self.floats: Dict[str, torch.Tensor] = {}


def _read_header(f: SafetensorsFile) -> dict:
    text = f.metadata.get(_META_KEY)
    if text is None:
        raise ValueError(f"{f.path}: not a lowbit.torch file (no {_META_KEY!r} metadata; "
                         "written by lowbit.torch.save_quantized?)")
    try:
        header = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{f.path}: the {_META_KEY!r} metadata is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{f.path}: the {_META_KEY!r} metadata is not a {FORMAT} record")
    if header.get("version") != VERSION:
        raise ValueError(f"{f.path}: {FORMAT} version {header.get('version')!r} is not supported (this lowbit "
                         f"reads version {VERSION})")
    if not isinstance(header.get("modules"), dict) or not isinstance(header.get("floats"), dict):
        raise ValueError(f"{f.path}: the {FORMAT} record lacks its module or float tables")
    return header


def _torch_from_file(f: SafetensorsFile, key: str) -> torch.Tensor:
    info = f.info(key)
    if info.dtype == "BF16":
        bits = np.array(f.raw(key).view(np.int16)).reshape(info.shape)
        return torch.from_numpy(bits).view(torch.bfloat16)
    return torch.from_numpy(np.array(f.get(key)))


def _check_target(model: torch.nn.Module, name: str, meta: dict) -> None:
    try:
        target = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"module {name!r}: the file has it but the model does not (a different architecture?)") \
            from None
    if not isinstance(target, (torch.nn.Linear, LowbitModule)):
        raise ValueError(f"module {name!r}: the model has a {type(target).__name__} there, not a linear layer")
    want = (meta.get("in_features"), meta.get("out_features"), meta.get("bias"))
    have = (target.in_features, target.out_features, target.bias is not None)
    if want != have:
        raise ValueError(f"module {name!r}: the file holds (in_features, out_features, bias) = {want}, the model "
                         f"{have}")


def _plan(model: torch.nn.Module, f: SafetensorsFile) -> _Plan:
    header = _read_header(f)
    plan = _Plan()
    by_module: Dict[str, List[str]] = {}
    for key in f.keys():
        kind, _, rest = key.partition("/")
        if kind == "q":
            mname, _, _ = rest.rpartition("/")
            by_module.setdefault(mname, []).append(key)
        elif kind != "f":
            raise ValueError(f"{f.path}: unexpected tensor {key!r} in a {FORMAT} file")
    extra = set(by_module) - set(header["modules"])
    if extra:
        raise ValueError(f"module {sorted(extra)[0]!r}: tensors in the file but no record in its header")
    for name, meta in header["modules"].items():
        if not isinstance(meta, dict):
            raise ValueError(f"module {name!r}: bad record in the file header")
        _check_target(model, name, meta)
        keys = by_module.get(name, [])
        prefix = f"q/{name}/"
        if _digest([(k[len(prefix):], f.raw_tensor(k)) for k in keys]) != meta.get("sha256"):
            raise ValueError(f"module {name!r}: its data does not match the checksum in the file header "
                             "(corrupted or edited file)")
        state = {k[len(prefix):]: np.array(f.get(k)) for k in keys}
        kind = meta.get("kind")
        try:
            if kind == "Linear":
                mod = Linear.from_state(state)
            elif kind == "BitLinear":
                if meta.get("bits") not in (1, 2):
                    raise ValueError(f"bad bits {meta.get('bits')!r}")
                mod = BitLinear.from_state(state, binary=meta["bits"] == 1)
            elif kind == "WeightOnlyLinear":
                mod = WeightOnlyLinear.from_state(state)
            else:
                raise ValueError(f"unknown module kind {kind!r}")
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"module {name!r}: cannot rebuild it from the file ({e})") from None
        if (mod.in_features, mod.out_features, mod.bias is not None) != \
                (meta["in_features"], meta["out_features"], meta["bias"]):
            raise ValueError(f"module {name!r}: its tensors disagree with its header record")
        plan.modules[name] = mod
    # float tensors: every state_dict entry outside the replaced modules, same shapes
    skip = tuple(n + "." for n in plan.modules)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    floats = header["floats"]
    in_file = {k[2:] for k in f.keys() if k.startswith("f/")}
    if set(floats) != in_file:
        odd = sorted(set(floats) ^ in_file)[0]
        raise ValueError(f"tensor {odd!r}: the file header and the file's tensors disagree")
    missing = sorted(set(sd) - in_file)
    if missing:
        raise ValueError(f"tensor {missing[0]!r}: the model has it but the file does not"
                         + (f" ({len(missing)} missing)" if len(missing) > 1 else ""))
    for key in sorted(in_file):
        if key not in sd:
            owner = key.rpartition(".")[0]
            raise ValueError(f"tensor {key!r} (module {owner!r}): the file has it but the model does not")
        raw = f.raw_tensor("f/" + key)
        if _digest([("", raw)]) != floats[key]:
            raise ValueError(f"tensor {key!r} (module {key.rpartition('.')[0]!r}): its data does not match the "
                             "checksum in the file header (corrupted or edited file)")
        t = _torch_from_file(f, "f/" + key)
        if tuple(t.shape) != tuple(sd[key].shape):
            raise ValueError(f"tensor {key!r}: shape {tuple(t.shape)} in the file, {tuple(sd[key].shape)} in the model")
        if t.dtype != sd[key].dtype:
            raise ValueError(f"tensor {key!r}: {t.dtype} in the file, {sd[key].dtype} in the model "
                             "(convert the skeleton with model.to(dtype) first)")
        plan.floats[key] = t
    return plan


def load_quantized(model: torch.nn.Module, path: Union[str, os.PathLike]) -> torch.nn.Module:
    """Rebuild a :func:`save_quantized` file into ``model`` (a float skeleton of the same
    architecture, e.g. built from its config); returns ``model``.

    The quantized modules are rebuilt from their stored codes (no requantization,
    so outputs are bit-identical to the saved model's) and every other tensor is
    copied in. Everything is read, checksummed and checked against the model
    first: a corrupted or mismatched file raises ValueError naming the module
    or tensor, and the model is left unchanged.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    with SafetensorsFile(path) as f:
        plan = _plan(model, f)
    sd = model.state_dict()
    with torch.no_grad():
        for key, t in plan.floats.items():
            sd[key].copy_(t)
    for name, mod in plan.modules.items():
        parent, leaf = _parent(model, name)
        setattr(parent, leaf, mod)
    return model
