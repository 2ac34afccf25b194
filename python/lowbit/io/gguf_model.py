"""GGUF model files in and out: read a llama.cpp model, requantize it with llama-quantize's presets.

``quantize_model(src, out, "Q4_K_M", imatrix=None, search=False)`` reads a GGUF
model (F32/F16/BF16 tensors, as llama.cpp's ``convert_hf_to_gguf.py`` writes
it) and writes a GGUF model that llama.cpp runs: every metadata key and the
tokenizer are copied byte for byte, ``general.file_type`` and
``general.quantization_version`` are set as ``llama-quantize`` sets them, and
each tensor gets the type ``llama-quantize`` would give it (its
``llama_tensor_get_type``: the per-preset rules for output/embedding/attention/
FFN tensors, the fallbacks for rows that are not a multiple of 256, the tensors
that stay as they are). Without ``search`` the output is byte-identical to
``llama-quantize IN OUT PRESET`` (header, tensor order, padding and data), as
far as ``lowbit.gguf`` encodes each type byte-identically to ggml.

The file is processed tensor by tensor (the input is memory-mapped; one
tensor's float32 copy and its blocks are in memory at a time) and appears
atomically: it is written to a temporary file beside OUT and renamed at the end;
on any error or Ctrl-C nothing is left behind.

Reading and writing GGUF is done here, not through the ``gguf`` package: the
writer must copy each metadata record unchanged (type and bytes), which
GGUFReader/GGUFWriter do not offer without decoding and re-encoding every value,
and GGUFReader decodes every tokenizer string up front (see docs/gguf.md for
the figures).
"""
from __future__ import annotations

import math
import os
import re
import struct
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["GGUFError", "GGUFFile", "GGML_TYPES", "PRESETS", "TensorPlan", "plan_types", "parse_tensor_types",
           "quantize_model", "read_tensor_f32"]

from .gguf_file import (  # noqa: F401  (the file format; re-exported)
    T_STRING,
    T_ARRAY,
    T_UINT32,
    MAGIC,
    DEFAULT_ALIGNMENT,
    QNT_VERSION,
    GGML_TYPES,
    TYPE_NAMES,
    FLOAT_TYPES,
    NOT_QUANTIZED,
    IMATRIX_IGNORED,
    PRESETS,
    ALIASES,
    _SCALAR,
    _NP,
    MAX_DIMS,
    GGUFError,
    preset_name,
    TensorInfo,
    tensor_nbytes,
    GGUFFile,
    _f16_to_f32,
    _bf16_to_f32,
    _f32_to_bf16,
    read_tensor_f32,
)

# ---------------------------------------------------------------------------
# llama-quantize's per-tensor type choice (src/llama-quant.cpp)

_CATS = (("attn_qkv.weight", "ATTENTION_QKV"), ("attn_kv_b.weight", "ATTENTION_KV_B"),
         ("attn_v.weight", "ATTENTION_V"), ("attn_k.weight", "ATTENTION_K"), ("attn_q.weight", "ATTENTION_Q"),
         ("attn_output.weight", "ATTENTION_OUTPUT"), ("ffn_up", "FFN_UP"), ("ffn_gate", "FFN_GATE"),
         ("ffn_down", "FFN_DOWN"))


def tensor_category(name: str) -> str:
    if name == "output.weight":
        return "OUTPUT"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "TOKEN_EMBD"
    for frag, cat in _CATS:
        if frag in name:
            return cat
    return "OTHER"


def _attn_v_like(cat: str) -> bool:
    return cat in ("ATTENTION_V", "ATTENTION_QKV", "ATTENTION_KV_B")


_NO_QUANT_FRAGMENTS = ("_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
                       "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
                       "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight",
                       "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
                       "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
                       "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
                       "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
                       ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd",
                       ".patch_merger", "a.rvq.codebook", "mm.a.code_embd")
_GLM5_NEXT_NO_QUANT = ("hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
                       "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight",
                       "ssm_g_b.weight", "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
                       "attn_v_b.weight")


def ggml_n_dims(ne: Sequence[int]) -> int:
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return max(n, 1)


def tensor_allows_quantization(name: str, ne: Sequence[int], arch: str, *, quantize_output: bool = True) -> bool:
    if ggml_n_dims(ne) < 2:
        return False
    if not name.endswith("weight"):
        return False
    if not quantize_output and name == "output.weight":
        return False
    if any(f in name for f in _NO_QUANT_FRAGMENTS):
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    if arch == "glm5-next" and any(f in name for f in _GLM5_NEXT_NO_QUANT):
        return False
    return True


@dataclass
class _Hparams:
    arch: str
    n_layer: int            # block_count (n_layer_all)
    n_expert: int
    n_head: int
    n_head_kv: int
    is_70b: bool

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0


def _first(v, default=0) -> int:
    if isinstance(v, list):
        v = v[0] if v else default
    return int(v) if v is not None else default


def read_hparams(f: GGUFFile) -> _Hparams:
    arch = f.arch
    n_layer = f.value(f"{arch}.block_count")
    if not isinstance(n_layer, int) or not 0 < n_layer <= 512:
        raise GGUFError(f.path, f"{arch}.block_count is missing or invalid ({n_layer!r}); llama.cpp needs it")
    n_expert = _first(f.value(f"{arch}.expert_count"), 0)
    if arch in ("hunyuan_vl", "hunyuan-dense") and n_expert <= 1:
        n_expert = 0
    n_head = _first(f.value(f"{arch}.attention.head_count"), 0)
    n_head_kv = _first(f.value(f"{arch}.attention.head_count_kv"), n_head) if \
        f"{arch}.attention.head_count_kv" in f.kv else n_head
    n_main = n_layer - _first(f.value(f"{arch}.nextn_predict_layers"), 0)
    is_70b = ((arch == "llama" and n_expert != 8 and n_main == 80 and n_head != n_head_kv)
              or (arch in ("qwen2", "deci", "olmo") and n_main == 80) or (arch == "jais2" and n_main == 68))
    return _Hparams(arch, n_layer, n_expert, n_head, n_head_kv, is_70b)


@dataclass
class TensorPlan:
    name: str
    ne: Tuple[int, ...]
    src_type: str
    dst_type: str
    quantize: bool               # False: bytes copied unchanged
    note: str = ""


def _blck(t: str) -> int:
    return GGML_TYPES[t][1]


def _fallback(name: str, ncols: int, target: str) -> Tuple[str, str]:
    qk = _blck(target)
    if ncols % qk == 0:
        return target, ""
    table = {"IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
             "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL", "Q2_0": "Q4_0", "Q2_K": "Q4_0",
             "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
    if target in table:
        rt = table[target]
    elif qk <= 32:
        rt = target
    else:
        raise ValueError(f"tensor {name!r}: no tensor type fallback is defined for type {target}")
    if ncols % _blck(rt):
        rt = "F16"
    return rt, f"row length {ncols} is not a multiple of {qk} ({target}): fallback {rt}"


class _TypeChooser:
    """llama_tensor_get_type_impl and its state (the per-category counters)."""

    def __init__(self, hp: _Hparams, ftype_name: str, names: Sequence[str], has_imatrix: bool,
                 output_tensor_type: Optional[str] = None):
        self.hp = hp
        self.ft = ftype_name
        self.has_imatrix = has_imatrix
        self.output_tensor_type = output_tensor_type
        cats = [tensor_category(n) for n in names]
        self.n_attention_wv = sum(_attn_v_like(c) for c in cats)
        self.has_tied = "OUTPUT" not in cats
        self.n_ffn = hp.n_layer
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0

    @staticmethod
    def use_more_bits(i: int, n: int) -> bool:
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    def layer_info(self, i: int, n: int, name: str) -> Tuple[int, int]:
        if self.hp.n_expert > 1:
            m = re.match(r"blk\.(\d+)\.", name)
            if not m:
                raise ValueError(f"failed to determine the layer of tensor {name!r}")
            i = int(m.group(1))
            if not 0 <= i < n:
                raise ValueError(f"bad layer {i} for tensor {name!r}: must be in [0, {n})")
        return i, n

    def choose(self, new: str, name: str, ne: Sequence[int], cat: str) -> str:  # noqa: C901 - mirrors llama.cpp
        hp, ft = self.hp, self.ft
        arch = hp.arch
        if arch == "glm5-next" and any(f in name for f in ("attn_q_a", "attn_q_b", "nextn.eh_proj")):
            if new not in ("F32", "BF16", "F16"):
                return "Q8_0"
        if cat == "OUTPUT" or (self.has_tied and cat == "TOKEN_EMBD"):
            nx, qk = ne[0], _blck(new)
            if self.output_tensor_type is not None:   # --output-tensor-type (here: a tied token_embd)
                new = self.output_tensor_type
            elif arch == "falcon" or nx % qk:
                new = "Q8_0"
            elif new != "Q8_0":
                new = "Q6_K"
        elif cat == "TOKEN_EMBD":
            if ft in ("TQ1_0", "TQ2_0"):
                new = "Q4_K"
        elif _attn_v_like(cat):
            if ft == "Q2_K":
                new = "Q4_K" if hp.n_gqa >= 4 else "Q3_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if self.i_attention_wv < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                new = "Q5_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and hp.n_gqa >= 4:
                new = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and self.use_more_bits(self.i_attention_wv, self.n_attention_wv):
                new = "Q6_K"
            elif ft == "Q4_K_S" and self.i_attention_wv < 4:
                new = "Q5_K"
            if hp.is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if hp.n_expert == 8:
                new = "Q8_0"
            self.i_attention_wv += 1
        elif cat == "ATTENTION_K":
            if hp.n_expert == 8:
                new = "Q8_0"
        elif cat == "FFN_DOWN":
            i, n = self.layer_info(self.i_ffn_down, self.n_ffn, name)
            if ft == "Q2_K":
                new = "Q3_K"
            elif ft == "Q3_K_M":
                new = ("Q5_K" if i < n // 16 else
                       "Q4_K" if arch != "falcon" or self.use_more_bits(i, n) else "Q3_K")
            elif ft == "Q3_K_L":
                new = "Q4_K" if arch == "falcon" else "Q5_K"
            elif ft == "Q4_K_M":
                if arch == "falcon":
                    new = "Q6_K" if i < n // 16 else "Q5_K" if self.use_more_bits(i, n) else "Q4_K"
                elif self.use_more_bits(i, n):
                    new = "Q6_K"
            elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not self.has_imatrix:
                new = "Q5_K"
            elif ft == "Q5_K_M" and self.use_more_bits(i, n):
                new = "Q6_K"
            elif ft == "Q4_K_S" and arch != "falcon" and i < n // 8:
                new = "Q5_K"
            elif ft in ("Q4_0", "Q5_0") and self.has_imatrix and i < n // 8:
                new = "Q4_1" if ft == "Q4_0" else "Q5_1"
            self.i_ffn_down += 1
        elif cat == "ATTENTION_OUTPUT":
            if arch != "falcon":
                if hp.n_expert == 8:
                    if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                        new = "Q5_K"
                else:
                    new = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ft, new)
            elif ft == "Q3_K_L":
                new = "Q4_K"
        elif cat == "ATTENTION_QKV":
            if ft in ("Q3_K_M", "Q3_K_L"):
                new = "Q4_K"
            elif ft == "Q4_K_M":
                new = "Q5_K"
            elif ft == "Q5_K_M":
                new = "Q6_K"
        elif cat == "FFN_GATE":
            self.layer_info(self.i_ffn_gate, self.n_ffn, name)
            self.i_ffn_gate += 1
        elif cat == "FFN_UP":
            self.layer_info(self.i_ffn_up, self.n_ffn, name)
            self.i_ffn_up += 1
        return new


def _weight_order_key(name: str):
    """llama_model_loader's weight_name_comparer: by layer number (sscanf "blk.%d."), then by name."""
    m = re.match(r"blk\.([+-]?\d+)", name)
    layer = -1
    if m:
        v = int(m.group(1))
        layer = v if -2 ** 31 <= v < 2 ** 31 else -1
    return (layer, name.encode("utf-8"))


def ggml_type_name(name, what: str = "type") -> str:
    """A ggml type name as llama-quantize parses one (case-insensitive: q4_k, Q8_0, f16...) -> ours."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a ggml type name (a str), got {type(name).__name__}")
    for t in GGML_TYPES:
        if t.lower() == name.lower():
            return t
    raise ValueError(f"{what}: invalid ggml type {name!r} (one of {', '.join(GGML_TYPES)})")


def parse_tensor_types(items) -> List[Tuple[str, str]]:
    """llama-quantize's ``--tensor-type PATTERN=TYPE`` list: [(pattern, type)], pattern lowercased.

    Also takes (pattern, type) pairs or a dict (as given: the C API's tt_overrides)."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        items = list(items.items())
    elif isinstance(items, str):
        items = [items]
    out = []
    for it in items:
        if isinstance(it, str):
            name, sep, typ = it.partition("=")
            if not sep:
                raise ValueError(f"--tensor-type {it!r}: malformed, expected PATTERN=TYPE")
            if not name:
                raise ValueError(f"--tensor-type {it!r}: missing tensor name")
            if not typ:
                raise ValueError(f"--tensor-type {it!r}: missing quantization type")
            name = name.lower()
        else:
            name, typ = it
        try:
            rx = re.compile(name)
        except re.error as e:
            raise ValueError(f"--tensor-type {name!r}: not a regular expression ({e})") from None
        out.append((rx.pattern, ggml_type_name(typ, f"--tensor-type {name}")))
    return out


def plan_types(f: GGUFFile, preset: str, *, has_imatrix: bool = False, pure: bool = False,
               quantize_output: bool = True, output_tensor_type: Optional[str] = None,
               token_embedding_type: Optional[str] = None,
               tensor_types: Sequence[Tuple[str, str]] = ()) -> List[TensorPlan]:
    """Each tensor's output type under ``preset``, in llama-quantize's output order.

    The overrides are llama-quantize's (llama_tensor_get_type in src/llama-quant.cpp):
    ``quantize_output=False`` is ``--leave-output-tensor`` (output.weight kept);
    ``token_embedding_type`` / ``output_tensor_type`` set token_embd / output.weight
    outright (no fallback; a tied token_embd follows ``output_tensor_type``);
    ``tensor_types`` [(regex, type)]: the first pattern found in a tensor's name
    (re.search) gives its type and skips the preset's rules (quantized presets only;
    the row-length fallback still applies); ``pure``: no preset rules at all.
    """
    preset = preset_name(preset)
    ftype, default = PRESETS[preset]
    out_t = None if output_tensor_type is None else ggml_type_name(output_tensor_type, "output_tensor_type")
    tok_t = None if token_embedding_type is None else ggml_type_name(token_embedding_type, "token_embedding_type")
    patterns = [(re.compile(p), ggml_type_name(t, f"tensor type {p!r}")) for p, t in tensor_types]
    hp = read_hparams(f)
    infos = sorted(f.tensors, key=lambda t: _weight_order_key(t.name))
    names = [t.name for t in infos]
    chooser = _TypeChooser(hp, preset, names, has_imatrix, out_t)
    quantized_default = default not in NOT_QUANTIZED
    plans = []
    for t in infos:
        note = ""
        cat = tensor_category(t.name)
        if not tensor_allows_quantization(t.name, t.ne, hp.arch, quantize_output=quantize_output):
            new = t.type
        elif tok_t is not None and cat == "TOKEN_EMBD" and not (
                t.name == "per_layer_token_embd.weight" and any(rx.search(t.name) for rx, _ in patterns)):
            new, note = _override(t, tok_t, "token_embedding_type")
        elif out_t is not None and cat == "OUTPUT":
            new, note = _override(t, out_t, "output_tensor_type")
        else:
            new = default
            if quantized_default:
                manual = False
                for rx, typ in patterns:
                    if rx.search(t.name):
                        if typ != new:
                            note = f"manual override: {new} -> {typ}"
                        new, manual = typ, True
                        break
                if not manual and not pure:
                    new = chooser.choose(new, t.name, t.ne, cat)
                new, fb = _fallback(t.name, t.ne[0], new)
                note = "; ".join(n for n in (note, fb) if n)
        plans.append(TensorPlan(t.name, t.ne, t.type, new, new != t.type, note))
    return plans


def _override_options(ov) -> Dict[str, object]:
    """The overrides given, for the report's options (llama-quantize's option names)."""
    out: Dict[str, object] = {}
    if ov["pure"]:
        out["pure"] = True
    if not ov["quantize_output"]:
        out["leave_output_tensor"] = True
    for k in ("output_tensor_type", "token_embedding_type"):
        if ov[k] is not None:
            out[k] = ov[k]
    if ov["tensor_types"]:
        out["tensor_types"] = [f"{p}={t}" for p, t in ov["tensor_types"]]
    return out


def _override(t, typ: str, what: str) -> Tuple[str, str]:
    """--output-tensor-type / --token-embedding-type: taken as given (llama.cpp applies no fallback)."""
    if t.ne[0] % _blck(typ):
        raise ValueError(f"tensor {t.name!r}: {what} {typ} needs rows that are a multiple of {_blck(typ)}, "
                         f"its rows have {t.ne[0]} values (llama-quantize has no fallback here)")
    return typ, f"{what} {typ}"


# ---------------------------------------------------------------------------
# writing

def _kv_record(key: str, typ: int, value) -> bytes:
    kb = key.encode("utf-8")
    out = struct.pack("<Q", len(kb)) + kb + struct.pack("<I", typ)
    if typ == T_STRING:
        vb = value.encode("utf-8")
        return out + struct.pack("<Q", len(vb)) + vb
    return out + struct.pack(_SCALAR[typ], value)


def _header(f: GGUFFile, plans: Sequence[TensorPlan], extra_kv: Sequence[Tuple[str, int, object]],
            alignment: int) -> Tuple[bytes, List[int]]:
    """The output file's header (KV pairs and tensor infos, padded) and each tensor's data offset."""
    replaced = {k for k, _, _ in extra_kv} | {"split.count", "split.no", "split.tensors.count"}
    recs = [f.raw_kv(k) for k in f.kv if k not in replaced]
    recs += [_kv_record(k, t, v) for k, t, v in extra_kv]
    parts = [MAGIC, struct.pack("<IQQ", 3, len(plans), len(recs))] + recs
    offsets, off = [], 0
    for p in plans:
        nb = p.name.encode("utf-8")
        nd = ggml_n_dims(p.ne)
        parts.append(struct.pack("<Q", len(nb)) + nb + struct.pack(f"<I{nd}QIQ", nd, *p.ne[:nd],
                                                                   GGML_TYPES[p.dst_type][0], off))
        offsets.append(off)
        off += -(-tensor_nbytes(p.ne, p.dst_type) // alignment) * alignment
    head = b"".join(parts)
    head += b"\0" * (-len(head) % alignment)
    return head, offsets


# ---------------------------------------------------------------------------
# quantize a model

def _gguf_api():
    from .. import gguf as G
    return G


def _capabilities(G):
    """(types lowbit.gguf encodes, types it encodes with an imatrix, types with a search=True encoder)."""
    enc = set(getattr(G, "ENCODABLE", G.FORMATS)) | set(FLOAT_TYPES)
    return enc, set(getattr(G, "IMATRIX", ())), set(getattr(G, "SEARCH", ()))


def _encode(G, x2d: np.ndarray, typ: str, imat: Optional[np.ndarray], search: bool) -> np.ndarray:
    if typ == "F32":
        return np.ascontiguousarray(x2d, np.float32).view(np.uint8)
    if typ == "F16":
        with np.errstate(over="ignore"):
            h = x2d.astype(np.float16)
        if not np.isfinite(h).all():
            raise ValueError("values beyond float16's range (F16 fallback): llama.cpp would reject the row")
        return h.view(np.uint8)
    if typ == "BF16":
        return _f32_to_bf16(np.ascontiguousarray(x2d)).view(np.uint8)
    kw = {}
    if imat is not None:
        kw["imatrix"] = imat
    if search:
        kw["search"] = True
    return G.quantize(x2d, typ, **kw)


def _decode(G, blob: np.ndarray, typ: str, shape) -> np.ndarray:
    if typ == "F32":
        return blob.view(np.float32).reshape(shape)
    if typ == "F16":
        return _f16_to_f32(blob).reshape(shape)
    if typ == "BF16":
        return _bf16_to_f32(blob).reshape(shape)
    return G.dequantize(blob, typ, shape)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


ProgressFn = Callable[[int, int, int, int, str], None]


SLAB_VALUES = 1 << 22    # values per unit of work (16 MiB of float32): memory stays bounded by a few slabs


def _slabs(p: TensorPlan) -> List[Tuple[int, int]]:
    """Row ranges [r0, r1) of a tensor, at most SLAB_VALUES values each, never across an expert (ne[1] rows)."""
    ne0 = p.ne[0]
    n_rows = math.prod(p.ne[1:])
    per_expert = p.ne[1] if len(p.ne) > 1 else 1
    step = max(1, min(SLAB_VALUES // max(ne0, 1), per_expert))
    out = []
    for e0 in range(0, n_rows, per_expert):
        e1 = min(e0 + per_expert, n_rows)
        out += [(r, min(r + step, e1)) for r in range(e0, e1, step)]
    return out


class _Prefetcher:
    """Reads the slabs to quantize, in order, one ahead of the encoder, on a helper thread.

    Each slab is read with pread into one of two reused float32 buffers (F16/BF16
    are widened there), so the encoder rarely waits on the disk or on fresh pages;
    memory stays at a few slabs whatever the tensor sizes.
    """

    def __init__(self, f: GGUFFile, work: Sequence[Tuple[TensorPlan, int, int]]):
        from concurrent.futures import ThreadPoolExecutor
        self.f = f
        self.work = list(work)
        self.k = 0
        big = max(((r1 - r0) * p.ne[0] for p, r0, r1 in self.work), default=0)
        self.bufs = [np.empty(big, np.float32), np.empty(big, np.float32)] if big else []
        self.raw = np.empty(big, np.uint16) if any(p.src_type != "F32" for p, _, _ in self.work) else None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lowbit-gguf-read")
        self.fut = self.pool.submit(self._load, 0) if self.work else None

    def _load(self, k: int) -> np.ndarray:
        p, r0, r1 = self.work[k]
        t = self.f.info(p.name)
        ne0 = t.ne[0]
        n = (r1 - r0) * ne0
        out = self.bufs[k % 2][:n]
        esize = GGML_TYPES[t.type][2]
        off = self.f.data_start + t.offset + r0 * ne0 * esize
        fd = self.f._fh.fileno()
        if t.type == "F32":
            _pread_into(fd, out.view(np.uint8), off)
        else:
            raw = self.raw[:n]
            _pread_into(fd, raw.view(np.uint8), off)
            if t.type == "F16":
                np.copyto(out, raw.view(np.float16), casting="unsafe")
            else:   # BF16
                np.left_shift(raw, 16, out=out.view(np.uint32), dtype=np.uint32)
        return out.reshape(r1 - r0, ne0)

    def next(self, name: str, r0: int) -> np.ndarray:
        p, w0, _ = self.work[self.k] if self.k < len(self.work) else (None, None, None)
        if p is None or p.name != name or w0 != r0:
            raise AssertionError(f"prefetch order: wanted {name} row {r0}")
        rows = self.fut.result()
        self.k += 1
        # the next read goes to the other buffer: the caller is done with the one before (one slab at a time)
        self.fut = self.pool.submit(self._load, self.k) if self.k < len(self.work) else None
        return rows

    def close(self) -> None:
        if self.fut is not None:
            self.fut.cancel()
        self.pool.shutdown(wait=True)
        self.bufs = []


def _pread_into(fd: int, buf: np.ndarray, offset: int) -> None:
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:   # no preadv (Windows): the helper thread is the only reader of this descriptor
            os.lseek(fd, offset + done, os.SEEK_SET)
            chunk = os.read(fd, min(len(view) - done, 1 << 26))
            n = len(chunk)
            view[done:done + n] = chunk
        if n <= 0:
            raise OSError(f"unexpected end of file at offset {offset + done}")
        done += n


def quantize_model(src, out, preset: str = "Q8_0", *, imatrix=None, imatrix_path: Optional[str] = None,
                   search: bool = False, force: bool = False, stats: bool = True, pure: bool = False,
                   leave_output_tensor: bool = False, output_tensor_type: Optional[str] = None,
                   token_embedding_type: Optional[str] = None, tensor_types=None,
                   report: Optional[str] = None, progress: Optional[ProgressFn] = None):
    """Requantize the GGUF model ``src`` into ``out`` with llama-quantize's ``preset``.

    ``preset``: Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    IQ4_XS, IQ4_NL, Q3_K_S/M/L, Q2_K, TQ1_0, TQ2_0, F16, BF16, F32 (``gguf:``
    prefix and the aliases Q4_K/Q5_K/Q3_K accepted). ``imatrix``: an
    :class:`lowbit.imatrix.Imatrix`, a path to llama-imatrix's output (GGUF or
    legacy .dat), or a dict name -> per-column importance; as with
    llama-quantize, it changes some type choices and the encoders that use one.
    ``imatrix_path`` is the text recorded in ``quantize.imatrix.file`` (default:
    the path given). ``search``: lowbit's harder search for scales (same formats,
    not byte-identical to llama.cpp). ``stats``: SQNR/MSE per tensor in the report
    (one decode per tensor). llama-quantize's per-tensor overrides: ``pure``
    (``--pure``), ``leave_output_tensor`` (``--leave-output-tensor``),
    ``output_tensor_type`` / ``token_embedding_type`` (ggml type names, any case),
    ``tensor_types`` (``--tensor-type``: "PATTERN=TYPE" strings, (regex, type) pairs
    or a dict; see :func:`plan_types`).
    Returns a :class:`lowbit.checkpoint.Report`.
    """
    from ..checkpoint import Report, tensor_error_stats   # the report shared with the safetensors path
    from .safetensors import atomic_output
    from .. import imatrix as IM

    preset = preset_name(preset)
    ftype, default = PRESETS[preset]
    overrides = dict(pure=bool(pure), quantize_output=not leave_output_tensor,
                     output_tensor_type=None if output_tensor_type is None else
                     ggml_type_name(output_tensor_type, "output_tensor_type"),
                     token_embedding_type=None if token_embedding_type is None else
                     ggml_type_name(token_embedding_type, "token_embedding_type"),
                     tensor_types=parse_tensor_types(tensor_types))
    src = os.fspath(src)
    out = os.path.abspath(os.fspath(out))
    if not out.lower().endswith(".gguf"):
        raise GGUFError(out, "a GGUF model is written to a .gguf file; name OUT *.gguf")
    imat = None
    if imatrix is not None:
        if isinstance(imatrix, (str, os.PathLike)):
            if imatrix_path is None:
                imatrix_path = os.fspath(imatrix)
            imat = IM.load_imatrix(imatrix)
        elif isinstance(imatrix, IM.Imatrix):
            imat = imatrix
        elif isinstance(imatrix, Mapping):
            imat = IM.Imatrix.from_dict(imatrix)
        else:
            raise TypeError(f"imatrix must be a path, an Imatrix or a dict, got {type(imatrix).__name__}")
        if not imat.entries:
            imat = None    # llama-quantize: an empty imatrix is no imatrix
    t0 = time.perf_counter()
    G = _gguf_api()
    can_encode, can_imatrix, can_search = _capabilities(G)
    if search and not can_search:
        raise ValueError("--search needs lowbit.gguf.quantize(..., search=True), which this build does not have")
    with GGUFFile(src) as f:
        if os.path.exists(out) and os.path.samefile(src, out):
            raise GGUFError(out, "is also the input; choose another OUT")
        guard = atomic_output(out, force=force, suffix=".gguf-tmp")
        guard.check()
        if report is not None:
            atomic_output(report, force=True).check()
        plans = plan_types(f, preset, has_imatrix=imat is not None, **overrides)
        # everything that could fail is checked before the first byte is written
        missing = sorted({p.dst_type for p in plans if p.quantize and p.dst_type not in can_encode})
        if missing:
            raise ValueError(f"preset {preset} needs {', '.join(missing)}, which this build of lowbit.gguf "
                             f"cannot encode yet")
        imats: Dict[str, Optional[np.ndarray]] = {}
        for p in plans:
            if not p.quantize:
                continue
            if p.src_type not in FLOAT_TYPES:
                raise GGUFError(src, f"tensor {p.name!r} is already {p.src_type}; requantizing a quantized "
                                     "model is disabled (start from the F32/F16/BF16 file)")
            v = None
            if imat is not None and p.name in imat.entries:
                vec = imat.values(p.name)
                n_mat = p.ne[2] if len(p.ne) > 2 else 1
                if vec.size == p.ne[0] * n_mat:
                    v = vec
                elif tensor_category(p.name) != "TOKEN_EMBD":
                    raise ValueError(f"imatrix size {vec.size} is different from tensor size {p.ne[0] * n_mat} "
                                     f"for {p.name}")
            if v is not None and p.dst_type not in IMATRIX_IGNORED:
                if p.dst_type not in can_imatrix:
                    raise ValueError(f"tensor {p.name!r} becomes {p.dst_type}, whose llama.cpp encoder uses the "
                                     f"importance matrix; lowbit.gguf cannot encode {p.dst_type} with one yet")
                imats[p.name] = v
        extra = [("general.quantization_version", T_UINT32, QNT_VERSION), ("general.file_type", T_UINT32, ftype)]
        if imat is not None:
            extra.append(("quantize.imatrix.file", T_STRING, (imatrix_path or "")[:127]))
            if imat.datasets:
                extra.append(("quantize.imatrix.dataset", T_STRING, imat.datasets[0][:127]))
            extra.append(("quantize.imatrix.entries_count", T_UINT32, len(imat.entries)))
            if imat.chunk_count > 0:
                extra.append(("quantize.imatrix.chunks_count", T_UINT32, imat.chunk_count))
        align = f.alignment
        head, offsets = _header(f, plans, extra, align)

        rep = Report(input=src, output=out, scheme=f"gguf:{preset}",
                     options={"preset": preset, "imatrix": imatrix_path if imat is not None else None,
                              "search": bool(search), "arch": f.arch,
                              **_override_options(overrides)})
        total_bytes = sum(f.info(p.name).nbytes for p in plans)
        done_bytes = 0
        loader = _Prefetcher(f, [(p, r0, r1) for p in plans if p.quantize for r0, r1 in _slabs(p)])
        try:
            with guard as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(head)
                    for i, p in enumerate(plans):
                        t1 = time.perf_counter()
                        info = f.info(p.name)
                        row: Dict[str, object] = {"name": p.name, "shape": list(info.shape), "dtype": p.src_type,
                                                  "numel": info.numel, "bytes_before": info.nbytes}
                        if fh.tell() != len(head) + offsets[i]:
                            raise AssertionError(f"{p.name}: at {fh.tell()}, expected {len(head) + offsets[i]}")
                        if not p.quantize:
                            fh.write(memoryview(f.data(p.name)).cast("B"))
                            nbytes = info.nbytes
                            row.update(action="kept", scheme="keep", bytes_after=nbytes)
                        else:
                            ne0 = p.ne[0]
                            v_all = imats.get(p.name)
                            acc = [0.0, 0.0, 0.0]     # signal, noise, max |error|
                            nbytes = 0
                            for r0, r1 in _slabs(p):
                                rows = loader.next(p.name, r0)   # float32 (r1 - r0, ne0), read ahead
                                v = None
                                if v_all is not None:
                                    e = r0 // p.ne[1] if v_all.size > ne0 else 0
                                    v = v_all[e * ne0:(e + 1) * ne0]
                                try:
                                    blob = _encode(G, rows, p.dst_type, v, search and p.dst_type in can_search)
                                except ValueError as e:
                                    raise GGUFError(src, f"tensor {p.name!r}: {str(e).splitlines()[0]}") from None
                                blob = np.ascontiguousarray(blob).reshape(-1)
                                if blob.nbytes != tensor_nbytes((ne0, r1 - r0), p.dst_type):
                                    raise AssertionError(f"{p.name}: {blob.nbytes} bytes for rows {r0}:{r1}")
                                if stats:
                                    st = tensor_error_stats(rows, _decode(G, blob, p.dst_type, rows.shape))
                                    acc[0] += st["signal_power"] * rows.size
                                    acc[1] += st["mse"] * rows.size
                                    acc[2] = max(acc[2], st["max_abs_err"])
                                fh.write(memoryview(blob).cast("B"))
                                nbytes += blob.nbytes
                                del rows, blob
                            row.update(action="quantized", scheme=p.dst_type, bits_per_weight=8.0 * nbytes /
                                       max(info.numel, 1), bytes_after=nbytes)
                            if p.note:
                                row["note"] = p.note
                            if stats:
                                sig, noise, n = acc[0], acc[1], max(info.numel, 1)
                                sq = (math.inf if noise == 0 else -math.inf if sig == 0
                                      else 10 * math.log10(sig / noise))
                                row.update(sqnr_db=sq, mse=noise / n, max_abs_err=acc[2], signal_power=sig / n)
                            else:
                                row.update(sqnr_db=float("nan"), mse=float("nan"), max_abs_err=float("nan"),
                                           signal_power=float("nan"))
                        pad = -nbytes % align
                        if pad:
                            fh.write(b"\0" * pad)
                        row["seconds"] = time.perf_counter() - t1
                        rep.rows.append(row)
                        done_bytes += info.nbytes
                        if progress is not None:
                            progress(i + 1, len(plans), done_bytes, total_bytes, p.name)
                    fh.flush()
                    os.fsync(fh.fileno())
        finally:
            loader.close()
        _fsync_dir(out)
        rep.seconds = time.perf_counter() - t0
    if report is not None:
        rep.save(report)
    return rep


def quantize_gguf_cli(args, progress=None):
    """``lowbit quantize IN.gguf OUT.gguf --scheme gguf:PRESET [--imatrix F] [--search]`` (called by cli.py)."""
    scheme = args.scheme or ""
    if not scheme.lower().startswith("gguf:"):
        raise ValueError(f"{args.input}: a GGUF model takes --scheme gguf:PRESET (llama-quantize's presets: "
                         f"{', '.join(PRESETS)}), not {scheme!r}")
    for opt, val in (("--granularity", args.granularity), ("--include", args.include), ("--exclude", args.exclude)):
        if val:
            raise ValueError(f"{opt} does not apply to a GGUF model (llama-quantize's per-tensor rules decide)")
    if args.clip not in (None, "none"):
        raise ValueError("--clip does not apply to a GGUF model")
    return quantize_model(args.input, args.output, scheme, imatrix=args.imatrix, search=args.search,
                          force=args.force, report=args.report, progress=progress,
                          stats=not getattr(args, "no_stats", False), pure=getattr(args, "pure", False),
                          leave_output_tensor=getattr(args, "leave_output_tensor", False),
                          output_tensor_type=getattr(args, "output_tensor_type", None),
                          token_embedding_type=getattr(args, "token_embedding_type", None),
                          tensor_types=_tensor_type_args(args))


def _tensor_type_args(args) -> List[str]:
    """--tensor-type PATTERN=TYPE (repeatable) and --tensor-type-file FILE (whitespace-separated)."""
    items: List[str] = []
    for it in getattr(args, "tensor_type", None) or []:   # in command-line order: the first match wins
        if isinstance(it, tuple):
            try:
                with open(it[1], encoding="utf-8") as fh:
                    items += fh.read().split()
            except OSError as e:
                raise ValueError(f"--tensor-type-file {it[1]}: {e.strerror or e}") from None
        else:
            items.append(it)
    return items
