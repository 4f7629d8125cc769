"""CPU cost of the KAN family's layers and encoders (prints numbers; not a test).

Sections (all forward + backward, median of timed repeats after warm-up):

* ``layers``: token feed-forwards on ``(B*N, C)`` tokens: MLP (ratio 3 and 4) vs ChebyKAN
  feed-forward (degree 2/3) vs RBF/FastKAN feed-forward; KANConv2d vs Conv2d; masked-SDPA
  neighbourhood attention (kernel 7, dilation 1/2) vs full attention at 14x14 and 28x28.
* ``train``: training throughput (img/s) of encoders at 28x28x1 with a linear head,
  cross-entropy, AdamW, fp32 and bf16 autocast, relative to the first encoder named;
  optional profile of the top ops.

Usage::

    python benchmarks/kan_layers.py [--threads 1] [--sections layers train] [--layer-batch 16]
        [--encoders resnet18 medvit_kan_tiny kan_resnet18] [--batch 64] [--steps 10] [--profile]
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from medfm.benchmark import require_2d_encoders
from medfm.encoders import create_encoder
from medfm.cli_parser import positive_int  # integer >= 1, one-line argparse error
from medfm.encoders.layers.kan import KANConv2d
from medfm.encoders.layers.neighborhood_attention import neighborhood_attention_2d
from medfm.encoders.medvit_kan import KANFeedForward
from timm.layers import Mlp


def compare(fns: Dict[str, Callable[[], torch.Tensor]], warmup: int = 3, repeats: int = 10) -> Dict[str, float]:
    """Median seconds of ``fn().sum().backward()`` per entry; runs are interleaved (one of each
    per round) so that load from other processes affects every entry alike."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn().float().sum().backward()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _print(prefix: str, results: Dict[str, float], ref: str) -> None:
    for name, sec in results.items():
        print(f"  {prefix}{name:32s} {sec * 1e3:9.2f} ms  ({sec / results[ref]:.2f}x {ref})")


def bench_layers(batch: int) -> None:
    print(f"== token feed-forwards, fwd+bwd, {batch} images x 49 tokens (7x7) ==")
    for dim in (128, 256):
        x = torch.randn(batch * 49, dim, requires_grad=True)
        layers = {
            "MLP ratio 4 (GELU)": Mlp(dim, 4 * dim),
            "MLP ratio 3 (GELU)": Mlp(dim, 3 * dim),
            "ChebyKAN FFN C-C-C deg 3": KANFeedForward(dim, dim, "chebyshev"),
            "ChebyKAN FFN C-C-C deg 2": KANFeedForward(dim, dim, {"name": "chebyshev", "degree": 2}),
            "RBF/FastKAN FFN C-C-C 8 grids": KANFeedForward(dim, dim, "rbf"),
        }
        res = compare({name: (lambda layer=layer: layer(x)) for name, layer in layers.items()})
        _print(f"C={dim:4d} ", res, "MLP ratio 4 (GELU)")

    print(f"== 3x3 convolutions on {batch}x64x28x28, fwd+bwd ==")
    x = torch.randn(batch, 64, 28, 28, requires_grad=True)
    convs = {
        "Conv2d 64-64": nn.Conv2d(64, 64, 3, padding=1, bias=False),
        "KANConv2d cheb deg 2": KANConv2d(64, 64, 3, padding=1, basis={"name": "chebyshev", "degree": 2}),
        "KANConv2d cheb deg 3": KANConv2d(64, 64, 3, padding=1),
        "KANConv2d rbf 8 + base": KANConv2d(64, 64, 3, padding=1, basis="rbf"),
    }
    _print("", compare({name: (lambda conv=conv: conv(x)) for name, conv in convs.items()}), "Conv2d 64-64")

    print(f"== attention, {batch} images, 2 heads x 32 dims, fwd+bwd ==")
    for side in (14, 28):
        q, k, v = (torch.randn(batch, side, side, 2, 32, requires_grad=True) for _ in range(3))
        flat = [t.detach().reshape(batch, side * side, 2, 32).transpose(1, 2).requires_grad_() for t in (q, k, v)]
        rows = {
            "full attention (SDPA)": lambda: F.scaled_dot_product_attention(*flat),
            "NA k7 d1 (masked SDPA)": lambda: neighborhood_attention_2d(q, k, v, 7, 1, backend="sdpa"),
            "DiNA k7 d2 (masked SDPA)": lambda: neighborhood_attention_2d(q, k, v, 7, 2, backend="sdpa"),
        }
        _print(f"{side}x{side} ", compare(rows), "full attention (SDPA)")


def bench_train(names: List[str], batch: int, steps: int, profile: bool) -> None:
    """Training img/s per encoder and precision; steps are interleaved across models (one
    step of each per round) so that load from other processes affects all of them alike."""
    print(f"== training throughput, {batch}x1x28x28, fwd+bwd+AdamW, {steps} timed steps (interleaved) ==")
    runs = {}
    for name in names:
        torch.manual_seed(0)
        enc = create_encoder(name, in_chans=1, img_size=28)
        model = nn.Sequential(enc, nn.Linear(enc.num_features, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 2, (batch,))
        for precision in ("fp32", "bf16"):
            def step(model=model, opt=opt, x=x, y=y, precision=precision) -> None:
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
                with ctx:
                    loss = F.cross_entropy(model(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            runs[(name, precision)] = (step, sum(p.numel() for p in model.parameters()) / 1e6)
    for step, _ in runs.values():  # warm-up
        for _ in range(3):
            step()
    times = {key: [] for key in runs}
    for _ in range(steps):
        for key, (step, _) in runs.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    base = {p: statistics.median(times[(names[0], p)]) for p in ("fp32", "bf16")}
    for (name, precision), ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:18s} {precision}  {batch / med:8.1f} img/s  ({med * 1e3:.0f} ms/step, "
              f"{runs[(name, precision)][1]:.1f}M params, {base[precision] / med:.2f}x {names[0]})")
    if profile:
        from torch.profiler import profile as prof

        for name in names:
            with prof() as p:
                runs[(name, "fp32")][0]()
            print(f"-- {name} fp32, top ops by self CPU time --")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` and print the chosen sections; bad arguments exit 2 with one line."""
    from medfm.registry import UnknownNameError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch threads (1 is the most stable on a shared machine)")
    parser.add_argument("--sections", nargs="+", default=["layers", "train"], choices=["layers", "train"])
    parser.add_argument("--encoders", nargs="+", default=["resnet18", "medvit_kan_tiny", "kan_resnet18"])
    parser.add_argument("--batch", type=positive_int, default=64, help="batch of the train section")
    parser.add_argument("--layer-batch", type=positive_int, default=16, help="images per layer benchmark")
    parser.add_argument("--steps", type=positive_int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    try:
        require_2d_encoders(args.encoders)
    except (UnknownNameError, ValueError) as err:  # one line (close matches), not a traceback after the layer section
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if "layers" in args.sections:
        bench_layers(args.layer_batch)
    if "train" in args.sections:
        bench_train(args.encoders, args.batch, args.steps, args.profile)


if __name__ == "__main__":
    main()
