"""A transformers decoder (Llama architecture, random weights) quantized in place with lowbit.torch.

    pip install "lowbit[torch]" transformers
    python examples/torch_decoder.py                      # 4 layers, hidden 1024, 2 threads
    python examples/torch_decoder.py --layers 2 --hidden 256 --new-tokens 8   # a quick look

The model is built from a ``LlamaConfig`` (nothing is downloaded; weights are
random, so only speed and agreement with the float model mean anything). Each
variant's linear layers are replaced by ``lowbit.torch.quantize_model`` (the
output head stays float, as by default), then the script measures:

- prefill: one forward over a ``--prompt``-token prompt (tokens per second);
- decode: greedy ``generate`` of ``--new-tokens`` tokens with the KV cache
  (tokens per second, M = 1 matmuls: the weights stream from memory);
- agreement: cosine of the prompt's last-position logits with the float model's,
  and how many greedy tokens match the float model's continuation.

torch's own dynamic int8 Linear (``quantize_dynamic``, FBGEMM) runs beside them, on the
same layers (the output head stays float32 for every variant). With random weights
the logits are nearly tied, so greedy continuations part early for every quantized
variant; the logit cosine is the meaningful agreement figure.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings

import torch

import lowbit
import lowbit.torch as lt


def build(args) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
                      num_hidden_layers=args.layers, num_attention_heads=max(args.hidden // 64, 1),
                      num_key_value_heads=max(args.hidden // 64, 1), max_position_embeddings=4096)
    return LlamaForCausalLM(cfg).eval()


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schemes", default="int8,int8-u7,ternary", help="comma-separated lowbit.torch schemes")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    lowbit.set_num_threads(args.threads)

    base = build(args)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, args.vocab, (1, args.prompt), generator=g)
    variants = {"float32": base}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the same layers as lowbit's default: every nn.Linear but the output head
        spec = {n: torch.ao.quantization.default_dynamic_qconfig for n, mod in base.named_modules()
                if type(mod) is torch.nn.Linear and n in lt.select_linears(base)}
        variants["torch quantize_dynamic int8"] = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(base), spec, dtype=torch.qint8)
    for scheme in filter(None, args.schemes.split(",")):
        variants[f"lowbit {scheme}"] = lt.quantize_model(copy.deepcopy(base), scheme)

    params = sum(p.numel() for p in base.parameters())
    print(f"Llama-style decoder, random weights: {args.layers} layers, hidden {args.hidden}, {params / 1e6:.0f}M "
          f"parameters; prompt {args.prompt} tokens, {args.new_tokens} new tokens; {args.threads} threads, "
          f"lowbit on {lowbit.get_isa()}")
    print(lt.quantized_modules(variants[list(variants)[-1]]).popitem()[1])
    ref_logits, ref_tokens = None, None
    rows = []
    with torch.no_grad():
        for name, m in variants.items():
            logits = m(prompt).logits[0, -1]
            gen = m.generate(prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                             do_sample=False, pad_token_id=0)[0, args.prompt:]
            if ref_logits is None:
                ref_logits, ref_tokens = logits, gen
            cos = torch.nn.functional.cosine_similarity(logits, ref_logits, dim=0).item()
            same = int((gen == ref_tokens).cumprod(0).sum())
            t_pre = best_of(lambda: m(prompt), args.repeat)
            t_gen = best_of(lambda: m.generate(prompt, max_new_tokens=args.new_tokens,
                                               min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0),
                            args.repeat)
            decode = args.new_tokens / max(t_gen - t_pre, 1e-9)   # generate = prefill + decode steps
            rows.append((name, cos, same, args.prompt / t_pre, decode))
    w = max(len(r[0]) for r in rows)
    print(f"{'variant':<{w}}  {'logit cos':>9}  {'same greedy':>11}  {'prefill tok/s':>13}  {'decode tok/s':>12}")
    for name, cos, same, pre, dec in rows:
        print(f"{name:<{w}}  {cos:9.4f}  {same:>5d}/{args.new_tokens:<5d}  {pre:13.0f}  {dec:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
