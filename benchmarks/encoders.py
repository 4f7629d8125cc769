"""Side-by-side CPU cost of the registered encoders (prints a Markdown table; not a test).

For every encoder (``medfm.list_encoders()``, 2D only, ``*_test`` variants excluded unless
``--include-test``) and image size it prints:

* ``params``: parameters of encoder + a 2-class linear head (millions);
* ``GFLOPs``: forward FLOPs of one image, counted by ``torch.utils.flop_counter.FlopCounterMode``
  (matmuls and convolutions only: elementwise work such as norms, activations and the selective
  scan's recurrence is not counted);
* ``train img/s``: forward + cross-entropy + backward + AdamW step at ``--batch-size``, fp32 and
  under ``torch.autocast("cpu", dtype=torch.bfloat16)``, and fp32 relative to ``--reference``;
* ``infer img/s``: ``no_grad`` forward in eval mode at the same batch, fp32 and bf16;
* ``peak MB``: peak resident set size during two fp32 training steps minus the resident set
  size before them, in a fresh subprocess per encoder and size: the peak is the kernel's RSS
  high-water mark (``VmHWM`` in /proc/self/status, which ``resource.getrusage`` reports as
  ``ru_maxrss``), reset to the current size via ``/proc/self/clear_refs`` first so that
  import-time peaks do not hide it (without procfs: the plain ``ru_maxrss`` rise, a lower
  bound). Includes the AdamW state.
  tracemalloc is not used: it does not see torch's CPU allocations.

Timing: after ``--warmup`` rounds, ``--steps`` rounds each run one step of every encoder in
turn (interleaved, so that load from other processes affects all alike); the median step time
is reported. ``--profile N`` also prints the N most expensive ops (self CPU time) of one fp32
training step of each encoder: what dominates its time.

Usage::

    python benchmarks/encoders.py [--sizes 28,64] [--encoders resnet18,vmamba_tiny] [--include-test]
        [--batch-size 64] [--steps 3] [--warmup 1] [--threads 1] [--in-chans 1]
        [--reference resnet18] [--profile 0]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import medfm
from medfm.benchmark import require_2d_encoders
from medfm.cli_parser import non_negative_int, positive_int  # one-line argparse errors
from medfm.registry import ENCODERS, UnknownNameError

MODES = ("train fp32", "train bf16", "infer fp32", "infer bf16")


def build(name: str, size: int, in_chans: int) -> nn.Module:
    """Encoder + linear head, seeded."""
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=in_chans, img_size=size)
    return nn.Sequential(enc, nn.Linear(enc.num_features, 2))


def make_step(model: nn.Module, mode: str, batch: int, size: int, in_chans: int) -> Callable[[], None]:
    """One timed unit of work for ``mode`` (see ``MODES``) on a fixed random batch."""
    x, y = torch.rand(batch, in_chans, size, size), torch.randint(0, 2, (batch,))
    bf16 = mode.endswith("bf16")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
    if mode.startswith("infer"):
        def infer() -> None:
            model.eval()
            with torch.no_grad(), autocast():
                model(x)
        return infer
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train() -> None:
        model.train()
        with autocast():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return train


def flops_per_image(model: nn.Module, size: int, in_chans: int) -> float:
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, in_chans, size, size))
    return counter.get_total_flops() / 1e9


def peak_memory_mb(name: str, size: int, batch: int, in_chans: int, threads: int) -> float:
    """Peak-RSS rise of two fp32 training steps, in a fresh interpreter (see module docstring)."""
    cmd = [sys.executable, __file__, "--_memory-probe", json.dumps([name, size, batch, in_chans, threads])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def _rss_kib(field: str) -> int:
    """A field of /proc/self/status (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _memory_probe(spec: str) -> None:
    name, size, batch, in_chans, threads = json.loads(spec)
    torch.set_num_threads(threads)
    step = make_step(build(name, size, in_chans), "train fp32", batch, size, in_chans)
    try:  # reset the peak RSS to the current RSS (Linux >= 4.0), so import-time peaks do not hide it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_kib("VmRSS")
        step()
        step()
        peak = _rss_kib("VmHWM")
    except OSError:  # no procfs: plain maxrss rise
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - base) / 1024)


def time_modes(names: List[str], size: int, args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """Median seconds per step for every encoder and mode, interleaved across encoders."""
    result: Dict[str, Dict[str, float]] = {n: {} for n in names}
    for mode in MODES:
        steps = {n: make_step(build(n, size, args.in_chans), mode, args.batch_size, size, args.in_chans) for n in names}
        times: Dict[str, List[float]] = {n: [] for n in names}
        for i in range(args.warmup + args.steps):
            for n, step in steps.items():
                start = time.perf_counter()
                step()
                if i >= args.warmup:
                    times[n].append(time.perf_counter() - start)
        for n in names:
            result[n][mode] = statistics.median(times[n])
        print(f"  [{size} px] {mode}: " + ", ".join(f"{n} {args.batch_size / result[n][mode]:.1f}" for n in names),
              file=sys.stderr, flush=True)
    return result


def profile_step(name: str, size: int, args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity, profile

    step = make_step(build(name, size, args.in_chans), "train fp32", args.batch_size, size, args.in_chans)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"\n{name} at {size} px, one fp32 training step (batch {args.batch_size}): "
          f"top {args.profile} ops by self CPU time")
    for e in events[:args.profile]:
        ms, share = e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total
        print(f"  {e.key[:60]:60s} {ms:9.1f} ms  {share:5.1f}%  ({e.count} calls)")


def _sizes(text: str) -> List[int]:
    """argparse type: comma-separated image sizes, each an integer >= 1."""
    return [positive_int(s) for s in text.split(",") if s.strip()]


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` and print the table; bad arguments (unknown or 3D encoder, unknown
    ``--reference``, a size an encoder cannot take) exit 2 with one line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=_sizes, default="28,64", help="comma-separated image sizes (px)")
    p.add_argument("--encoders", default=None, help="comma-separated names (default: all 2D encoders)")
    p.add_argument("--include-test", action="store_true", help="also run the *_test variants")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--steps", type=positive_int, default=3, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=non_negative_int, default=1)
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (<= 2 on shared machines)")
    p.add_argument("--in-chans", type=int, default=1, choices=(1, 3))
    p.add_argument("--reference", default="resnet18", help="encoder the train fp32 ratio is relative to")
    p.add_argument("--profile", type=non_negative_int, default=0, metavar="N",
                   help="print the top N ops of a training step")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--_memory-probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._memory_probe:
        _memory_probe(args._memory_probe)
        return
    torch.set_num_threads(args.threads)
    try:  # one line with close matches, not a traceback
        if args.encoders is not None:
            names = require_2d_encoders(n.strip() for n in args.encoders.split(",") if n.strip())
        else:
            names = [n for n in medfm.list_encoders() if ENCODERS.tags(n).get("dims", 2) == 2
                     and (args.include_test or not ENCODERS.tags(n).get("test", False))]
        ENCODERS.get(args.reference)
        if not args.sizes:
            raise ValueError("--sizes names no image size")
        _run(names, args.sizes, args)
    except (UnknownNameError, ValueError) as err:  # e.g. an image size an encoder cannot take
        p.error(str(err))


def _run(names: List[str], sizes: List[int], args: argparse.Namespace) -> None:
    """Print the header, one table row per encoder and size, then the optional profiles."""
    print(f"CPU, {torch.get_num_threads()} thread(s), batch {args.batch_size}, in_chans {args.in_chans}, "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up; torch {torch.__version__}\n")
    print("| encoder | px | params (M) | GFLOPs/img | train img/s fp32 | train img/s bf16 | train fp32 vs "
          f"{args.reference} | infer img/s fp32 | infer img/s bf16 | peak MB (train fp32) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        times = time_modes(names, size, args)
        for n in names:
            model = build(n, size, args.in_chans)
            params = sum(q.numel() for q in model.parameters()) / 1e6
            gflops = flops_per_image(model, size, args.in_chans)
            ips = {m: args.batch_size / times[n][m] for m in MODES}
            ratio = (f"{ips['train fp32'] / (args.batch_size / times[args.reference]['train fp32']):.2f}"
                     if args.reference in times else "-")
            mem = (float("nan") if args.no_memory
                   else peak_memory_mb(n, size, args.batch_size, args.in_chans, args.threads))
            print(f"| {n} | {size} | {params:.2f} | {gflops:.3f} | {ips['train fp32']:.1f} | {ips['train bf16']:.1f} | "
                  f"{ratio} | {ips['infer fp32']:.1f} | {ips['infer bf16']:.1f} | {mem:.0f} |", flush=True)
    if args.profile:
        for size in sizes:
            for n in names:
                profile_step(n, size, args)


if __name__ == "__main__":
    main()
