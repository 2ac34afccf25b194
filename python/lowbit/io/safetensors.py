"""Safetensors reading and writing, with our own validating parser.

Format (https://github.com/huggingface/safetensors): 8 bytes little-endian
``u64`` header length ``N``, ``N`` bytes of UTF-8 JSON, then the data buffer.
The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin,
end]}`` (offsets relative to the data buffer) and may hold ``"__metadata__"``,
a str -> str dict.

The reader treats every file as hostile: the header length, every offset, shape
and dtype is checked against the file size *before* anything is allocated or
mapped, tensors may not overlap, and a tensor's byte size must equal
``prod(shape) * itemsize``. Data is read through a read-only memory map, so a
tensor costs memory only when it is used. Nothing is ever unpickled.

The writer is atomic: data is spooled to a temporary file in OUT's folder, the
header and data are assembled into a second temporary file there, and that file
is renamed onto OUT. An error or Ctrl-C removes both temporaries, so OUT is
either the complete new file or untouched.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import struct
import sys
import tempfile
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

__all__ = ["SafetensorsError", "TensorInfo", "SafetensorsFile", "SafetensorsWriter", "RawTensor",
           "DTYPES", "MAX_HEADER_BYTES", "dtype_name", "bf16_to_float32", "atomic_output"]

#: Largest header we accept (the safetensors library's own limit is 100 MB).
MAX_HEADER_BYTES = 100_000_000
#: Most dimensions a tensor may claim.
MAX_NDIM = 32

# safetensors dtype name -> (NumPy storage dtype, itemsize). BF16 is stored as
# raw uint16 (NumPy has no bfloat16) and widened to float32 on request.
DTYPES: Dict[str, np.dtype] = {
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
    "C64": np.dtype("<c8"),
}
# Names the format defines that NumPy cannot hold; reported as unsupported, not unknown.
_UNSUPPORTED = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4"}
_FROM_NUMPY = {np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k
               for k, v in DTYPES.items() if k != "BF16"}


class SafetensorsError(ValueError):
    """A file that is not valid safetensors (or a problem writing one); names the file."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class TensorInfo(NamedTuple):
    name: str
    dtype: str               # safetensors dtype name ("F32", "BF16", ...)
    shape: Tuple[int, ...]
    begin: int               # offsets in the data buffer
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F16", "BF16", "F32", "F64")


class RawTensor(NamedTuple):
    """Bytes of a tensor passed through unchanged (e.g. BF16 kept as BF16)."""
    dtype: str
    shape: Tuple[int, ...]
    data: np.ndarray         # uint8 view of the bytes


def dtype_name(dt: np.dtype) -> str:
    dt = np.dtype(dt)
    key = dt.newbyteorder("<") if dt.itemsize > 1 else dt
    if key not in _FROM_NUMPY:
        raise TypeError(f"dtype {dt} cannot be stored in safetensors")
    return _FROM_NUMPY[key]


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32 exactly."""
    return (np.asarray(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _no_constant(c):
    raise ValueError(f"{c} is not JSON")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_header(path, header_bytes: bytes, data_size: int) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    """Validate a header against the data buffer size; returns (tensors, metadata)."""
    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SafetensorsError(path, f"header is not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.lstrip().startswith("{"):
        raise SafetensorsError(path, "header is not a JSON object (not a safetensors file?)")
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise SafetensorsError(path, f"header is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise SafetensorsError(path, "header is not a JSON object")
    meta = obj.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SafetensorsError(path, "__metadata__ must map strings to strings")
    tensors: Dict[str, TensorInfo] = {}
    for name, ent in obj.items():
        where = f"tensor {name!r}"
        if not isinstance(ent, dict):
            raise SafetensorsError(path, f"{where}: entry is not an object")
        dt, shape, offs = ent.get("dtype"), ent.get("shape"), ent.get("data_offsets")
        if not isinstance(dt, str):
            raise SafetensorsError(path, f"{where}: dtype missing or not a string")
        if dt in _UNSUPPORTED:
            raise SafetensorsError(path, f"{where}: dtype {dt} is not supported by lowbit (no NumPy type)")
        if dt not in DTYPES:
            raise SafetensorsError(path, f"{where}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise SafetensorsError(path, f"{where}: shape must be a list of non-negative integers, got {shape!r}")
        if len(shape) > MAX_NDIM:
            raise SafetensorsError(path, f"{where}: {len(shape)} dimensions (at most {MAX_NDIM})")
        if not (isinstance(offs, list) and len(offs) == 2 and all(_is_int(o) for o in offs)):
            raise SafetensorsError(path, f"{where}: data_offsets must be [begin, end], got {offs!r}")
        b, e = offs
        if not 0 <= b <= e:
            raise SafetensorsError(path, f"{where}: data_offsets [{b}, {e}] are not 0 <= begin <= end")
        if e > data_size:
            raise SafetensorsError(path, f"{where}: data_offsets [{b}, {e}] run past the end of the data "
                                         f"({data_size} bytes; truncated file?)")
        need = math.prod(shape) * DTYPES[dt].itemsize   # Python ints: no overflow on absurd shapes
        if need != e - b:
            raise SafetensorsError(path, f"{where}: shape {shape} of {dt} needs {need} bytes but data_offsets "
                                         f"[{b}, {e}] hold {e - b}")
        tensors[name] = TensorInfo(name, dt, tuple(shape), b, e)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise SafetensorsError(path, f"tensors {n0!r} [{b0}, {e0}] and {n1!r} [{b1}, {e1}] overlap")
    return tensors, meta


def _foreign(head: bytes) -> Optional[str]:
    """A clearer message when the first bytes are another format's magic."""
    if head[:4] == b"GGUF":
        return "is a GGUF file, not safetensors (read it with the gguf package: gguf.GGUFReader)"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "looks like a PyTorch pickle/zip checkpoint; lowbit never unpickles: convert it to safetensors first"
    return None


class SafetensorsFile:
    """A validated, memory-mapped safetensors file. Use as a context manager or call close()."""

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise SafetensorsError(self.path, e.strerror or str(e)) from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise SafetensorsError(self.path, f"file is too short ({size} bytes) to be safetensors")
            head = f.read(8)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise SafetensorsError(self.path, _foreign(head) or f"header length {n} is implausible (limit "
                                                  f"{MAX_HEADER_BYTES}; not a safetensors file?)")
            if 8 + n > size:
                raise SafetensorsError(self.path, _foreign(head) or f"header length {n} runs past the end of the "
                                                  f"file ({size} bytes; truncated?)")
            header = f.read(n)
            if len(header) != n:
                raise SafetensorsError(self.path, "file shrank while reading the header")
            if not header.lstrip()[:1] == b"{" and _foreign(head):
                raise SafetensorsError(self.path, _foreign(head))
            self.data_offset = 8 + n
            self.data_size = size - self.data_offset
            self.tensors, self.metadata = parse_header(self.path, header, self.data_size)
            self._mm: Optional[mmap.mmap] = None
            if self.data_size > 0 and any(t.nbytes for t in self.tensors.values()):
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._size = size

    # ---- container protocol ----------------------------------------------
    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        # The mmap stays alive while arrays returned by get() reference it.
        self._mm = None

    def keys(self) -> List[str]:
        return list(self.tensors)

    def __contains__(self, name) -> bool:
        return name in self.tensors

    def __len__(self) -> int:
        return len(self.tensors)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    # ---- data --------------------------------------------------------------
    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes (uint8, read-only, memory-mapped)."""
        t = self.info(name)
        if t.nbytes == 0:
            return np.zeros(0, np.uint8)
        if self._mm is None:
            raise SafetensorsError(self.path, "file is closed")
        if self._mm.size() != self._size:
            raise SafetensorsError(self.path, "file changed size since it was opened")
        return np.frombuffer(self._mm, np.uint8, count=t.nbytes, offset=self.data_offset + t.begin)

    def get(self, name: str, *, float32: bool = False) -> np.ndarray:
        """The tensor as a read-only NumPy array (a view of the map when aligned).

        BF16 is widened to float32 (a copy). ``float32=True`` converts any
        floating dtype to float32.
        """
        t = self.info(name)
        dt = DTYPES[t.dtype]
        arr = self.raw(name).view(dt) if t.nbytes else np.zeros(0, dt)
        if not arr.flags.aligned:
            arr = arr.copy()
        arr = arr.reshape(t.shape)
        if t.dtype == "BF16":
            return bf16_to_float32(arr)
        if float32 and arr.dtype.kind == "f" and arr.dtype != np.float32:
            return arr.astype(np.float32)
        return arr

    def raw_tensor(self, name: str) -> RawTensor:
        t = self.info(name)
        return RawTensor(t.dtype, t.shape, self.raw(name))


# ---------------------------------------------------------------------------
# writing

def _os_error(path, e: OSError) -> SafetensorsError:
    return SafetensorsError(path, f"cannot write: {e.strerror or e}")


#: Paths this process has renamed into place (so an interrupt that lands after
#: the rename can say the file is complete rather than "nothing written").
COMMITTED: set = set()


def _commit(tmp: str, path: str) -> None:
    """Rename ``tmp`` onto ``path`` and record it, with SIGINT held off in between."""
    import signal
    import threading
    hold = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if hold else None
    try:
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _os_error(path, e) from None
        COMMITTED.add(path)
    finally:
        if hold:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class atomic_output:
    """Context manager giving a temporary path next to ``path``; renamed onto it on success.

    OUT existing is refused unless ``force``. On any exception (KeyboardInterrupt
    included) the temporary is removed and ``path`` is left untouched.
    """

    def __init__(self, path, *, force: bool = False, suffix: str = ".lowbit-tmp"):
        self.path = os.path.abspath(os.fspath(path))
        self.force = force
        self.suffix = suffix
        self.tmp: Optional[str] = None
        self.extra: List[str] = []     # further temporaries to clean up

    def check(self) -> None:
        if os.path.isdir(self.path):
            raise SafetensorsError(self.path, "is a directory; give an output file name")
        if os.path.lexists(self.path) and not self.force:
            raise SafetensorsError(self.path, "already exists (use --force / force=True to overwrite)")
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise SafetensorsError(self.path, f"folder {folder} does not exist")

    def mktemp(self, suffix: Optional[str] = None) -> str:
        folder, base = os.path.split(self.path)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix or self.suffix, dir=folder)
        except OSError as e:
            raise SafetensorsError(self.path, f"cannot write in folder {folder}: {e.strerror or e}") from None
        os.close(fd)
        try:   # mkstemp makes 0600; give OUT the permissions a plain open() would
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
        except OSError:
            pass
        return tmp

    def __enter__(self) -> str:
        self.check()
        self.tmp = self.mktemp()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                if os.path.lexists(self.path) and not self.force:
                    raise SafetensorsError(self.path, "appeared while writing; not overwritten (use --force)")
                _commit(self.tmp, self.path)
                self.tmp = None
        finally:
            for p in [self.tmp] + self.extra:
                if p is not None:
                    try:
                        os.unlink(p)
                    except FileNotFoundError:
                        pass
        return False


def _as_bytes_view(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize > 1 and arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.reshape(-1).view(np.uint8)


class SafetensorsWriter:
    """Stream tensors into a new safetensors file, atomically.

    >>> with SafetensorsWriter("out.safetensors") as w:
    ...     w.add("a", np.zeros(3, np.float32))
    ...     w.metadata["k"] = "v"

    Tensors are spooled to a temporary file as they are added (memory stays at
    one tensor); on exit the header and the spool are assembled into a second
    temporary file that replaces OUT in one rename.
    """

    def __init__(self, path, *, force: bool = False, metadata: Optional[Mapping[str, str]] = None):
        self._out = atomic_output(path, force=force)
        self.path = self._out.path
        self.metadata: Dict[str, str] = dict(metadata or {})
        self._entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
        self._pos = 0
        self._spool = None
        self._spool_path: Optional[str] = None

    def __enter__(self) -> "SafetensorsWriter":
        self._final_tmp = self._out.__enter__()
        try:
            self._spool_path = self._out.mktemp(".lowbit-spool")
            self._out.extra.append(self._spool_path)
            self._spool = open(self._spool_path, "wb")
        except BaseException:
            self._out.__exit__(*sys.exc_info())   # remove what was created
            raise
        return self

    def add(self, name: str, value: Union[np.ndarray, RawTensor]) -> None:
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"bad tensor name {name!r}")
        if name in self._entries:
            raise ValueError(f"tensor {name!r} added twice")
        if isinstance(value, RawTensor):
            dt, shape, data = value.dtype, tuple(value.shape), np.asarray(value.data, np.uint8).reshape(-1)
            if dt not in DTYPES or math.prod(shape) * DTYPES[dt].itemsize != data.size:
                raise ValueError(f"tensor {name!r}: raw data does not match {dt} {list(shape)}")
        else:
            arr = np.asarray(value)
            dt, shape, data = dtype_name(arr.dtype), arr.shape, _as_bytes_view(arr)
        try:
            self._spool.write(memoryview(data))
        except OSError as e:
            raise _os_error(self.path, e) from None
        self._entries[name] = (dt, tuple(int(s) for s in shape), self._pos, self._pos + data.size)
        self._pos += data.size

    def _header(self) -> bytes:
        h: Dict[str, object] = {}
        if self.metadata:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
                raise ValueError("safetensors metadata must map str to str")
            h["__metadata__"] = dict(self.metadata)
        for name, (dt, shape, b, e) in self._entries.items():
            h[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [b, e]}
        hb = json.dumps(h, separators=(",", ":")).encode()
        return hb + b" " * (-(8 + len(hb)) % 8)   # data starts 8-byte aligned, as the reference writer does

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self._spool is not None:
                self._spool.close()
            if exc_type is None:
                header = self._header()
                try:
                    with open(self._final_tmp, "wb") as out, open(self._spool_path, "rb") as src:
                        out.write(struct.pack("<Q", len(header)))
                        out.write(header)
                        out.flush()
                        _copy_rest(src, out, self._pos)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as e:
                    raise _os_error(self.path, e) from None
        except BaseException:
            self._out.__exit__(*sys.exc_info())
            raise
        return self._out.__exit__(exc_type, exc, tb)


def _copy_rest(src, dst, n: int) -> None:
    """Append ``n`` bytes of ``src`` to ``dst`` without a large buffer (sendfile where possible)."""
    off = 0
    if hasattr(os, "sendfile"):
        try:
            while off < n:
                sent = os.sendfile(dst.fileno(), src.fileno(), off, min(n - off, 1 << 30))
                if sent == 0:
                    break
                off += sent
        except OSError:   # not supported here: copy the rest by hand
            pass
    src.seek(off)
    dst.seek(0, os.SEEK_END)
    shutil.copyfileobj(src, dst, 1 << 20)


def write(path, tensors: Mapping[str, Union[np.ndarray, RawTensor]], *, metadata: Optional[Mapping[str, str]] = None,
          force: bool = False) -> None:
    """Write a dict of arrays as one safetensors file, atomically."""
    with SafetensorsWriter(path, force=force, metadata=metadata) as w:
        for name, v in tensors.items():
            w.add(name, v)


def read_header(path) -> Tuple[Dict[str, TensorInfo], Dict[str, str]]:
    with SafetensorsFile(path) as f:
        return dict(f.tensors), dict(f.metadata)


def open_many(paths: Iterable[str]) -> List[SafetensorsFile]:
    return [SafetensorsFile(p) for p in paths]
