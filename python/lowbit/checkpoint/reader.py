"""Reading checkpoints: a safetensors file, a sharded folder or a folder of files as one
name space (:class:`Checkpoint`), and :func:`load` for files lowbit wrote."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Union

import numpy as np

from ..io.safetensors import RawTensor, SafetensorsFile, TensorInfo
from ..qtensor import QTensor
from .format import FORMAT, PIECES, QMETA_PREFIX, CheckpointError

__all__ = ["Checkpoint", "load"]


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
