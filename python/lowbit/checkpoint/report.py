"""The error statistics of a quantized tensor and the report of one checkpoint quantization."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..io.safetensors import atomic_output

__all__ = ["tensor_error_stats", "Report", "format_size"]


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
                              format_size(r["bytes_before"]), format_size(r["bytes_after"])))
            elif r["action"] == "dropped":
                lines.append((name, shape, f"dropped ({r['dtype']})", "", "", "", "", format_size(r["bytes_before"]), "0 B"))
            else:
                lines.append((name, shape, f"keep ({r['dtype']})", f"{8 * r['bytes_before'] / max(r['numel'], 1):.3g}",
                              "", "", "", format_size(r["bytes_before"]), format_size(r["bytes_after"])))
        t = self.totals()
        sq = t["sqnr_db"]
        total = ("TOTAL", f"{t['quantized']} quantized, {t['kept']} kept"
                 + (f", {t['dropped']} dropped" if t["dropped"] else ""), self.scheme,
                 "" if t["bits_per_weight"] is None else f"{t['bits_per_weight']:.3g}",
                 "" if sq is None else ("inf" if sq == math.inf else f"{sq:.2f}"),
                 "" if t["mse"] is None else f"{t['mse']:.3g}",
                 "" if t["max_abs_err"] is None else f"{t['max_abs_err']:.3g}",
                 format_size(t["bytes_before"]), format_size(t["bytes_after"]))
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
             f"{format_size(t['bytes_before'])} -> {format_size(t['bytes_after'])}")
        if t["ratio"]:
            s += f" ({t['ratio']:.2f}x smaller)"
        if t["sqnr_db"] is not None:
            s += f"; quantized weights at {t['bits_per_weight']:.3g} bits/weight, SQNR {t['sqnr_db']:.2f} dB"
        if t["seconds"]:
            s += (f"; {t['seconds']:.2f} s ({t['tensors_per_s']:.1f} tensors/s, "
                  f"{t['mb_per_s']:.1f} MB/s)")
        return s


def format_size(n) -> str:
    """Bytes as text in powers of 1000: 999 B, 1.5 KB, 2.0 MB ..."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"

