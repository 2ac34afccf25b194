"""GGUF files: the container format of llama.cpp models and importance matrices.

A small, bounds-checked reader (memory-mapped tensor data, metadata records kept
byte for byte so a writer can copy them unchanged) and the type table. Used by the
model pipeline (lowbit.io.gguf_model) and by lowbit.imatrix.
"""
from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
QNT_VERSION = 2   # GGML_QNT_VERSION

# name -> (ggml type id, block size, bytes per block)
GGML_TYPES: Dict[str, Tuple[int, int, int]] = {
    "F32": (0, 1, 4), "F16": (1, 1, 2), "Q4_0": (2, 32, 18), "Q4_1": (3, 32, 20), "Q5_0": (6, 32, 22),
    "Q5_1": (7, 32, 24), "Q8_0": (8, 32, 34), "Q8_1": (9, 32, 36), "Q2_K": (10, 256, 84), "Q3_K": (11, 256, 110),
    "Q4_K": (12, 256, 144), "Q5_K": (13, 256, 176), "Q6_K": (14, 256, 210), "Q8_K": (15, 256, 292),
    "IQ2_XXS": (16, 256, 66), "IQ2_XS": (17, 256, 74), "IQ3_XXS": (18, 256, 98), "IQ1_S": (19, 256, 50),
    "IQ4_NL": (20, 32, 18), "IQ3_S": (21, 256, 110), "IQ2_S": (22, 256, 82), "IQ4_XS": (23, 256, 136),
    "I8": (24, 1, 1), "I16": (25, 1, 2), "I32": (26, 1, 4), "I64": (27, 1, 8), "F64": (28, 1, 8),
    "IQ1_M": (29, 256, 56), "BF16": (30, 1, 2), "TQ1_0": (34, 256, 54), "TQ2_0": (35, 256, 66),
    "MXFP4": (39, 32, 17), "NVFP4": (40, 64, 36), "Q1_0": (41, 128, 18), "Q2_0": (42, 64, 18),
}
TYPE_NAMES: Dict[int, str] = {v[0]: k for k, v in GGML_TYPES.items()}
FLOAT_TYPES = ("F32", "F16", "BF16")
NOT_QUANTIZED = ("F32", "F16", "BF16", "I8", "I16", "I32", "I64", "F64")
#: types whose ggml encoder ignores the importance matrix (quantize_q8_0 & co.)
IMATRIX_IGNORED = ("Q8_0", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4", "F32", "F16", "BF16")

# llama-quantize's presets: name -> (llama_ftype, default ggml type)
PRESETS: Dict[str, Tuple[int, str]] = {
    "F32": (0, "F32"), "F16": (1, "F16"), "BF16": (32, "BF16"),
    "Q4_0": (2, "Q4_0"), "Q4_1": (3, "Q4_1"), "Q5_0": (8, "Q5_0"), "Q5_1": (9, "Q5_1"), "Q8_0": (7, "Q8_0"),
    "Q2_K": (10, "Q2_K"), "Q3_K_S": (11, "Q3_K"), "Q3_K_M": (12, "Q3_K"), "Q3_K_L": (13, "Q3_K"),
    "Q4_K_S": (14, "Q4_K"), "Q4_K_M": (15, "Q4_K"), "Q5_K_S": (16, "Q5_K"), "Q5_K_M": (17, "Q5_K"),
    "Q6_K": (18, "Q6_K"), "IQ4_NL": (25, "IQ4_NL"), "IQ4_XS": (30, "IQ4_XS"),
    "TQ1_0": (36, "TQ1_0"), "TQ2_0": (37, "TQ2_0"),
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

# GGUF metadata value types
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NP = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
       12: "<f8"}
T_STRING, T_ARRAY, T_UINT32 = 8, 9, 4
MAX_DIMS = 4


class GGUFError(ValueError):
    """A malformed or unsupported GGUF file, or an option that does not apply; one line naming the file."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")


def preset_name(name: str) -> str:
    """Canonical preset name (case-insensitive, ``gguf:`` prefix and aliases accepted)."""
    n = str(name).strip()
    if n.lower().startswith("gguf:"):
        n = n[5:]
    n = n.upper()
    n = ALIASES.get(n, n)
    if n not in PRESETS:
        raise ValueError(f"unknown llama-quantize preset {name!r}; known: {', '.join(PRESETS)}")
    return n


# ---------------------------------------------------------------------------
# reading

@dataclass
class TensorInfo:
    name: str
    ne: Tuple[int, ...]          # ggml order: ne[0] is the row length
    type: str
    offset: int                  # from the start of the data section

    @property
    def shape(self) -> Tuple[int, ...]:
        """Row-major (NumPy) shape: ne reversed."""
        return tuple(reversed(self.ne))

    @property
    def numel(self) -> int:
        return math.prod(self.ne)

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.ne, self.type)


def tensor_nbytes(ne: Sequence[int], typ: str) -> int:
    _, bs, ts = GGML_TYPES[typ]
    return math.prod(ne[1:]) * (ne[0] // bs) * ts


class GGUFFile:
    """A GGUF file, memory-mapped. ``kv`` maps each key to ``(type, raw record bytes span)``;
    ``value(key)`` decodes one; ``tensors`` lists the TensorInfos in file order;
    ``data(name)`` is a read-only uint8 view of a tensor's bytes."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self._fh = open(self.path, "rb")
        except OSError as e:
            raise GGUFError(self.path, f"cannot open: {e.strerror or e}") from None
        try:
            size = os.fstat(self._fh.fileno()).st_size
            if size < 24:
                raise GGUFError(self.path, f"not a GGUF file ({size} bytes)")
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self._parse()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        mm = getattr(self, "_mm", None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:   # a view is still alive; the map goes when it does
                pass
            self._mm = None
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
            self._fh = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- parsing ----------------------------------------------------------------
    def _need(self, pos: int, n: int) -> None:
        if n < 0 or pos + n > len(self._mm):
            raise GGUFError(self.path, f"truncated (needs {n} bytes at offset {pos}, file has {len(self._mm)})")

    def _u(self, fmt: str, pos: int):
        n = struct.calcsize(fmt)
        self._need(pos, n)
        return struct.unpack_from(fmt, self._mm, pos)[0], pos + n

    def _str(self, pos: int) -> Tuple[bytes, int]:
        n, pos = self._u("<Q", pos)
        self._need(pos, n)
        return self._mm[pos:pos + n], pos + n

    def _skip_value(self, typ: int, pos: int, depth: int = 0) -> int:
        if typ in _SCALAR:
            n = struct.calcsize(_SCALAR[typ])
            self._need(pos, n)
            return pos + n
        if typ == T_STRING:
            n, pos = self._u("<Q", pos)
            self._need(pos, n)
            return pos + n
        if typ == T_ARRAY:
            if depth > 2:
                raise GGUFError(self.path, "metadata arrays nested too deep")
            at, pos = self._u("<I", pos)
            n, pos = self._u("<Q", pos)
            if n > (len(self._mm) - pos) // (struct.calcsize(_SCALAR[at]) if at in _SCALAR else 8):
                raise GGUFError(self.path, f"a metadata array at offset {pos} claims {n} elements, more than "
                                           "the file holds (truncated?)")
            if at in _SCALAR:
                k = n * struct.calcsize(_SCALAR[at])
                self._need(pos, k)
                return pos + k
            if at == T_STRING:
                mm, end = self._mm, len(self._mm)
                for _ in range(n):
                    if pos + 8 > end:
                        self._need(pos, 8)
                    m = int.from_bytes(mm[pos:pos + 8], "little")
                    pos += 8 + m
                    if pos > end:
                        self._need(pos - m, m)
                return pos
            if at == T_ARRAY:
                for _ in range(n):
                    pos = self._skip_value(T_ARRAY, pos, depth + 1)
                return pos
            raise GGUFError(self.path, f"unknown metadata array element type {at}")
        raise GGUFError(self.path, f"unknown metadata value type {typ}")

    def _parse(self) -> None:
        if self._mm[:4] != MAGIC:
            raise GGUFError(self.path, "not a GGUF file (bad magic)")
        version, pos = self._u("<I", 4)
        if version not in (2, 3):
            raise GGUFError(self.path, f"GGUF version {version} is not supported (2 and 3 are)")
        self.version = version
        n_tensors, pos = self._u("<Q", pos)
        n_kv, pos = self._u("<Q", pos)
        if n_tensors > len(self._mm) // 24 or n_kv > len(self._mm) // 13:
            raise GGUFError(self.path, f"header claims {n_tensors} tensors and {n_kv} keys, more than the file holds")
        self.kv: Dict[str, Tuple[int, Tuple[int, int]]] = {}
        for _ in range(n_kv):
            start = pos
            kb, pos = self._str(pos)
            try:
                key = bytes(kb).decode("utf-8")
            except UnicodeDecodeError:
                raise GGUFError(self.path, f"metadata key at offset {start} is not UTF-8") from None
            typ, pos = self._u("<I", pos)
            pos = self._skip_value(typ, pos)
            if key in self.kv:
                raise GGUFError(self.path, f"duplicate metadata key {key!r}")
            self.kv[key] = (typ, (start, pos))
        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.kv:
            a = self.value("general.alignment")
            if self.kv["general.alignment"][0] != T_UINT32 or a <= 0 or a & (a - 1):
                raise GGUFError(self.path, f"general.alignment must be a power-of-2 uint32, got {a!r}")
            self.alignment = a
        self.tensors: List[TensorInfo] = []
        self._by_name: Dict[str, TensorInfo] = {}
        for _ in range(n_tensors):
            nb, pos = self._str(pos)
            try:
                name = bytes(nb).decode("utf-8")
            except UnicodeDecodeError:
                raise GGUFError(self.path, f"a tensor name at offset {pos} is not UTF-8") from None
            nd, pos = self._u("<I", pos)
            if not 1 <= nd <= MAX_DIMS:
                raise GGUFError(self.path, f"tensor {name!r}: {nd} dimensions (1..{MAX_DIMS} allowed)")
            self._need(pos, 8 * nd)
            ne = struct.unpack_from(f"<{nd}Q", self._mm, pos)
            pos += 8 * nd
            tid, pos = self._u("<I", pos)
            off, pos = self._u("<Q", pos)
            if tid not in TYPE_NAMES:
                raise GGUFError(self.path, f"tensor {name!r}: unknown ggml type {tid}")
            t = TensorInfo(name, tuple(int(x) for x in ne), TYPE_NAMES[tid], int(off))
            if any(x < 0 or x >= 1 << 62 for x in t.ne) or math.prod(t.ne) >= 1 << 62:
                raise GGUFError(self.path, f"tensor {name!r}: bad shape {t.ne}")
            if t.ne[0] % GGML_TYPES[t.type][1]:
                raise GGUFError(self.path, f"tensor {name!r}: row length {t.ne[0]} is not a multiple of "
                                f"{t.type}'s block ({GGML_TYPES[t.type][1]})")
            if name in self._by_name:
                raise GGUFError(self.path, f"duplicate tensor name {name!r}")
            self.tensors.append(t)
            self._by_name[name] = t
        self.header_end = pos
        self.data_start = -(-pos // self.alignment) * self.alignment
        for t in self.tensors:
            if t.offset % self.alignment:
                raise GGUFError(self.path, f"tensor {t.name!r}: data offset {t.offset} is not aligned to "
                                f"{self.alignment}")
            if self.data_start + t.offset + t.nbytes > len(self._mm):
                raise GGUFError(self.path, f"tensor {t.name!r}: data runs past the end of the file (truncated?)")

    # -- access -------------------------------------------------------------------
    def raw_kv(self, key: str) -> bytes:
        s, e = self.kv[key][1]
        return bytes(self._mm[s:e])

    def value(self, key: str, default=None):
        """The decoded value of ``key`` (scalars as Python values, strings as str, arrays as lists)."""
        if key not in self.kv:
            return default
        typ, (s, _) = self.kv[key]
        _, pos = self._str(s)
        pos += 4
        return self._read_value(typ, pos)[0]

    def _read_value(self, typ: int, pos: int):
        if typ in _SCALAR:
            v, pos = self._u(_SCALAR[typ], pos)
            return v, pos
        if typ == T_STRING:
            b, pos = self._str(pos)
            return bytes(b).decode("utf-8", errors="replace"), pos
        at, pos = self._u("<I", pos)
        n, pos = self._u("<Q", pos)
        if at in _SCALAR:
            k = n * struct.calcsize(_SCALAR[at])
            arr = np.frombuffer(self._mm, dtype=_NP[at], count=n, offset=pos).copy()
            return arr.tolist(), pos + k
        out = []
        for _ in range(n):
            v, pos = self._read_value(at, pos)
            out.append(v)
        return out, pos

    def names(self) -> List[str]:
        return [t.name for t in self.tensors]

    def info(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise GGUFError(self.path, f"no tensor named {name!r}") from None

    def data(self, name: str) -> np.ndarray:
        t = self.info(name)
        return np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=self.data_start + t.offset)

    @property
    def arch(self) -> str:
        a = self.value("general.architecture")
        if not isinstance(a, str):
            raise GGUFError(self.path, "has no general.architecture (not a llama.cpp model?)")
        return a


def _f16_to_f32(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.float16).astype(np.float32)


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """ggml_fp32_to_bf16_row_ref: round to nearest even; NaN kept quiet."""
    u = x.view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
    if nan.any():
        r[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    return r


def read_tensor_f32(f: GGUFFile, name: str) -> np.ndarray:
    """A tensor as float32 in its row-major shape (F32/F16/BF16; quantized types through lowbit.gguf.dequantize)."""
    t = f.info(name)
    raw = f.data(name)
    if t.type == "F32":
        a = raw.view(np.float32)
    elif t.type == "F16":
        a = _f16_to_f32(raw)
    elif t.type == "BF16":
        a = _bf16_to_f32(raw)
    else:
        from .. import gguf as G
        if t.type not in G.FORMATS:
            raise GGUFError(f.path, f"tensor {name!r}: lowbit cannot read type {t.type} yet")
        a = G.dequantize(raw, t.type, (t.numel // t.ne[0], t.ne[0]))
    return a.reshape(t.shape)
