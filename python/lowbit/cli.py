"""The ``lowbit`` command (also ``python -m lowbit``).

    lowbit quantize IN OUT --scheme int8|int4|ternary|nf4|gguf:Q8_0|... [options]
    lowbit inspect FILE
    lowbit plot FILE --tensor NAME --out PNG
    lowbit demo
    lowbit schemes

Every failure prints one line ``lowbit: error: <file>: <problem>`` on stderr and
exits with status 1 (2 for a command-line usage error, 130 on Ctrl-C); nothing
is left behind. See docs/cli.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import List, Optional

from . import checkpoint as ckpt
from ._progress import Progress
from .qtensor import QTensor

__all__ = ["main"]


def _add_scheme_options(p: argparse.ArgumentParser, default_scheme: Optional[str]) -> None:
    p.add_argument("--scheme", default=default_scheme,
                   help="int2..int8 (symmetric), uint2..uint8 (zero point), ternary[:twn|:threshold], "
                        "binary[:bitnet], nf4, kmeans2..kmeans8, gguf:Q8_0|Q4_0|Q4_1|Q5_0|Q5_1|TQ1_0|TQ2_0 "
                        f"(default {default_scheme}; `lowbit schemes` lists them)")
    p.add_argument("--granularity", default=None, metavar="tensor|channel|group:N",
                   help="scale per tensor, per output channel, or per N values of a row "
                        "(default: the scheme's, e.g. channel for int8, group:128 for int4)")
    p.add_argument("--clip", default="none", metavar="none|percentile:P|mse|kl",
                   help="how the range is chosen before the scale (int/uint schemes; default none)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lowbit", description="Quantize model checkpoints on the CPU, exactly and fast.")
    from . import __version__
    ap.add_argument("--version", action="version", version=f"lowbit {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    q = sub.add_parser("quantize", help="quantize a safetensors checkpoint",
                       description="Quantize IN (a .safetensors file, a sharded folder with "
                                   "model.safetensors.index.json, or a folder of .safetensors) into OUT.")
    q.add_argument("input", metavar="IN")
    q.add_argument("output", metavar="OUT", help=".safetensors (or .gguf for gguf:* schemes)")
    _add_scheme_options(q, "int8")
    q.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="also quantize tensors whose name matches this glob (repeatable)")
    q.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="keep tensors whose name matches this glob in their original dtype (repeatable; wins)")
    q.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    q.add_argument("--report", metavar="FILE", help="also write the per-tensor report as JSON")
    q.add_argument("--quiet", "-q", action="store_true", help="no table, no progress bar")
    q.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    q.add_argument("--imatrix", metavar="FILE", help="GGUF model input: llama-imatrix's importance matrix (.gguf/.dat)")
    q.add_argument("--search", action="store_true", help="GGUF model input: search scales harder (not llama.cpp bytes)")
    q.add_argument("--no-stats", action="store_true", help="GGUF model input: no SQNR/MSE per tensor (skips a decode)")
    # llama-quantize's per-tensor overrides (GGUF model input; docs/cli.md)
    q.add_argument("--pure", action="store_true", help="GGUF model input: every tensor gets the preset's type "
                                                       "(no k-quant mixture; llama-quantize --pure)")
    q.add_argument("--leave-output-tensor", action="store_true", help="GGUF model input: keep output.weight as is")
    q.add_argument("--output-tensor-type", metavar="TYPE", help="GGUF model input: ggml type of output.weight")
    q.add_argument("--token-embedding-type", metavar="TYPE", help="GGUF model input: ggml type of token_embd.weight")
    q.add_argument("--tensor-type", action="append", metavar="PATTERN=TYPE",
                   help="GGUF model input: tensors whose name matches the regex PATTERN get TYPE (repeatable; "
                        "the first match wins)")
    q.add_argument("--tensor-type-file", action="append", dest="tensor_type", metavar="FILE",
                   type=lambda path: ("file", path), help="GGUF model input: PATTERN=TYPE entries from FILE")

    i = sub.add_parser("inspect", help="list what a checkpoint holds")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("plot", help="histogram + quantization levels + staircase of one tensor",
                       description="Plot one tensor's weight histogram with the quantization levels and the clip "
                                   "range over it, and the quantize-dequantize staircase. FILE may be an original "
                                   "checkpoint (the tensor is quantized with --scheme) or one lowbit wrote.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--tensor", required=True, metavar="NAME")
    p.add_argument("--out", required=True, metavar="PNG")
    _add_scheme_options(p, "int4")
    p.add_argument("--force", action="store_true", help="overwrite PNG if it exists")

    d = sub.add_parser("demo", help="the whole pipeline on a generated checkpoint (no download)")
    d.add_argument("--out", metavar="DIR", help="keep the files in DIR (default: a temporary folder, removed)")
    d.add_argument("--scheme", default="int4", help="scheme to demonstrate (default int4)")

    sub.add_parser("schemes", help="list the schemes and whether their packages are installed")
    return ap


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help(sys.stderr)
        return 2
    try:
        return {"quantize": cmd_quantize, "inspect": cmd_inspect, "plot": cmd_plot, "demo": cmd_demo,
                "schemes": cmd_schemes}[args.command](args)
    except KeyboardInterrupt:
        from .io.safetensors import COMMITTED
        out = getattr(args, "output", None) if args.command == "quantize" else getattr(args, "out", None)
        if out is not None and os.path.abspath(out) in COMMITTED:
            print(f"\nlowbit: interrupted after {out} was completely written", file=sys.stderr)
        else:
            print("\nlowbit: interrupted; nothing written", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `lowbit inspect x | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except (ValueError, TypeError, OSError, KeyError, ImportError) as e:
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {e.strerror or e}"
        else:
            msg = _one_line(e)
            if isinstance(e, KeyError):
                msg = msg.strip("'\"")
        print(f"lowbit: error: {msg}", file=sys.stderr)
        return 1


def _gguf_overrides(args) -> list:
    """The llama-quantize override options given (they need a GGUF model input)."""
    given = [("--pure", args.pure), ("--leave-output-tensor", args.leave_output_tensor),
             ("--output-tensor-type", args.output_tensor_type), ("--token-embedding-type", args.token_embedding_type),
             ("--tensor-type", args.tensor_type)]
    return [name for name, v in given if v]


def cmd_quantize(args) -> int:
    bar = Progress(force=args.progress) if not args.quiet else None
    try:
        if args.input.lower().endswith(".gguf"):   # a llama.cpp model: llama-quantize's presets (docs/gguf.md)
            from .io.gguf_model import quantize_gguf_cli
            rep = quantize_gguf_cli(args, bar)
        elif args.imatrix or args.search or args.no_stats or _gguf_overrides(args):
            given = [n for n, v in (("--imatrix", args.imatrix), ("--search", args.search),
                                    ("--no-stats", args.no_stats)) if v] + _gguf_overrides(args)
            raise ValueError(f"{', '.join(given)}: these options apply to a GGUF model input (IN.gguf)")
        else:
            rep = ckpt.quantize_checkpoint(args.input, args.output, args.scheme, granularity=args.granularity,
                                           clip=args.clip, include=args.include, exclude=args.exclude,
                                           force=args.force, report=args.report, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(rep.table())
        print()
    print(rep.summary())
    print(f"wrote {rep.output}" + (f" and {args.report}" if args.report else ""))
    return 0


def _inspect_rows(path):
    with ckpt.Checkpoint(path) as ck:
        files, meta, lowbit_file = ck.paths(), dict(ck.metadata), ck.is_lowbit
        infos = {n: ck.info(n) for n in ck.names()}
    tensors = ckpt.load(path) if lowbit_file else None
    rows = []
    if tensors is not None:
        for name, v in tensors.items():
            if isinstance(v, QTensor):
                rows.append({"name": name, "kind": "quantized", "shape": list(v.shape), "scheme": v.scheme,
                             "bits": v.bits, "granularity": v.granularity, "packed": v.packed,
                             "bytes": v.nbytes, "bits_per_weight": v.bits_per_weight})
            else:
                t = infos[name]
                rows.append({"name": name, "kind": "array", "shape": list(t.shape), "dtype": t.dtype,
                             "bytes": t.nbytes})
    else:
        for name, t in infos.items():
            rows.append({"name": name, "kind": "array", "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
                         "would_quantize": ckpt.select(name, t)})
    return files, meta, lowbit_file, rows


def cmd_inspect(args) -> int:
    files, meta, lowbit_file, rows = _inspect_rows(args.file)
    if args.json:
        print(json.dumps({"files": files, "metadata": meta, "lowbit": lowbit_file, "tensors": rows}, indent=1))
        return 0
    total = sum(r["bytes"] for r in rows)
    nq = sum(r["kind"] == "quantized" for r in rows)
    print(f"{args.file}: {len(rows)} tensors in {len(files)} file(s), {ckpt.format_size(total)}"
          + (f"; quantized by lowbit ({nq} QTensors, scheme {meta.get('lowbit.scheme', '?')})" if lowbit_file else ""))
    shown = {k: v for k, v in meta.items() if not k.startswith(ckpt.QMETA_PREFIX)}
    if shown:
        print("metadata: " + ", ".join(f"{k}={v if len(v) < 60 else v[:57] + '...'}" for k, v in shown.items()))
    table = [("tensor", "shape", "type", "bits/w", "bytes")]
    for r in rows:
        shape = "x".join(map(str, r["shape"])) or "scalar"
        if r["kind"] == "quantized":
            typ = f"{r['scheme']} {r['bits']}-bit {r['granularity']}" + (f" packed={r['packed']}" if r["packed"] else "")
            bpw = f"{r['bits_per_weight']:.3g}"
        else:
            typ = r["dtype"] + ("  (would quantize)" if r.get("would_quantize") else "")
            n = max(math.prod(r["shape"]), 1)
            bpw = f"{8 * r['bytes'] / n:.3g}"
        table.append((r["name"], shape, typ, bpw, ckpt.format_size(r["bytes"])))
    w = [max(len(t[i]) for t in table) for i in range(5)]
    for j, t in enumerate(table):
        print("  ".join(c.rjust(w[i]) if i >= 3 else c.ljust(w[i]) for i, c in enumerate(t)).rstrip())
        if j == 0:
            print("  ".join("-" * x for x in w))
    return 0


def cmd_plot(args) -> int:
    from . import plot
    path = plot.plot_checkpoint_tensor(args.file, args.tensor, args.out, scheme=args.scheme,
                                       granularity=args.granularity, clip=args.clip, force=args.force)
    print(f"wrote {path}")
    return 0


def cmd_demo(args) -> int:
    from . import demo
    return demo.run(out_dir=args.out, scheme=args.scheme)


def cmd_schemes(args) -> int:
    rows = [("scheme", "default granularity", "clip", "output", "available", "description")]
    for s in ckpt.SCHEMES.values():
        try:
            s.require()
            ok = "yes"
        except ckpt.CheckpointError:
            ok = "no"
        rows.append((s.name, s.default_granularity if s.granularity else "fixed blocks", "yes" if s.clip else "-",
                     s.output, ok, s.description))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
        if j == 0:
            print("  ".join("-" * x for x in w))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
