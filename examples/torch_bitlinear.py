"""A PyTorch BitLinear whose forward runs on lowbit's packed ternary kernel, written out by hand.

The maintained version of this module is ``lowbit.torch.BitLinear`` (a torch custom
operator that survives torch.compile/export; ``lowbit.torch.quantize_model(model,
"ternary")`` converts a whole model); see docs/torch.md. This file shows the bare
mechanism in a few lines.

Inference only (no autograd through the kernel). The weight is quantized to
{-1, 0, +1} (BitNet b1.58 absmean) and packed once; each forward quantizes the
activations per token (int8) and runs the int32-exact ternary matmul. The input
tensor is handed to lowbit without a copy (CPU float32 tensors are viewed by
NumPy through DLPack), and the result comes back as a tensor sharing the
NumPy buffer (torch.from_numpy).

    pip install torch  # optional: lowbit itself does not need it
    python examples/torch_bitlinear.py
"""
from __future__ import annotations

import time

import numpy as np
import torch

import lowbit


class BitLinear(torch.nn.Module):
    """Drop-in inference replacement for nn.Linear with ternary (or binary) weights."""

    def __init__(self, linear: torch.nn.Linear, *, binary: bool = False, per_channel: bool = False):
        super().__init__()
        w = linear.weight.detach().to(torch.float32).contiguous().numpy()
        b = None if linear.bias is None else linear.bias.detach().to(torch.float32).numpy()
        self.layer = lowbit.BitLinear.from_float(w, b, binary=binary, axis=0 if per_channel else None)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @classmethod
    def from_state(cls, state: dict, bias=None) -> "BitLinear":
        """Rebuild from ``TernaryWeight.to_dict()`` arrays (e.g. loaded from safetensors): no floats, no requantizing."""
        self = cls.__new__(cls)
        super(BitLinear, self).__init__()
        tw = lowbit.TernaryWeight.from_dict(state)
        self.layer = lowbit.BitLinear(tw, bias)
        self.out_features, self.in_features = tw.shape
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            x = x.to(device="cpu", dtype=torch.float32)
        y = self.layer(x.detach().contiguous())   # lowbit views the tensor through DLPack: no copy
        return torch.from_numpy(y)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight={self.layer.weight!r}"


def bitnet_reference(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """The same BitLinear forward written in plain torch (float math on the quantized values)."""
    w = linear.weight.detach()
    g = w.abs().mean().clamp(min=1e-5)
    wq = (w / g).round().clamp(-1, 1)
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    xq = (x * s).round().clamp(-128, 127)
    y = (xq @ wq.T) * (g / s)
    return y + linear.bias.detach() if linear.bias is not None else y


def main() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024))
    fast = torch.nn.Sequential(BitLinear(model[0]), torch.nn.GELU(), BitLinear(model[2]))
    print(fast)

    x = torch.randn(8, 1024)
    with torch.no_grad():
        y = fast(x)
        h = torch.nn.functional.gelu(bitnet_reference(model[0], x))
        y_ref = bitnet_reference(model[2], h)
    err = (y - y_ref).abs().max().item() / y_ref.abs().max().item()
    print(f"max |lowbit - torch BitNet reference| / max |y| = {err:.2e}")

    # Store and reload a layer without going back to floats.
    state = fast[0].layer.weight.to_dict()
    again = BitLinear.from_state(state, model[0].bias.detach().numpy())
    assert np.array_equal(again(x).numpy(), fast[0](x).numpy())

    torch.set_num_threads(2)
    lowbit.set_num_threads(2)
    lin = torch.nn.Linear(4096, 4096, bias=False)
    bl = BitLinear(lin)
    for M in (1, 128):
        xb = torch.randn(M, 4096)
        for name, f in (("torch float32 nn.Linear", lin), ("lowbit BitLinear (ternary)", bl)):
            with torch.no_grad():
                f(xb)
                t = time.perf_counter()
                for _ in range(10):
                    f(xb)
            print(f"M={M:4d} {name:28s} {(time.perf_counter() - t) / 10 * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
