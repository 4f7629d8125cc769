"""Print the cost of the encoders' per-forward input check (one ``torch.aminmax`` read back to the host).

Usage: python benchmarks/input_check_cost.py [--steps 100]
Times a training step (forward, backward, AdamW; bf16 autocast where the device has it) of a few
encoders with ``encoder(x, check=True)`` and ``check=False`` on the device the Trainer picks,
the batch already there, best of two runs each. On a GPU the read-back is a device sync. On an
H200 (torch 2.11, 2026-11-22) two sessions of it disagreed: +11.4 / +2.7 / +15.2 / +6.6 % and
-0.7 / +3.5 / +0.1 / +11.9 % for the four cases below, i.e. between nothing and about 15 % a step.
"""
import argparse
import time
from typing import List, Optional

import torch

from medfm.encoders import create_encoder
from medfm.training.loop import resolve_precision, training_device

CASES = [("resnet18", 28, 128), ("resnet18", 28, 512), ("vit_tiny", 28, 128), ("resnet18", 224, 64)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Optional[List[str]] = None) -> None:
    """Print one line per encoder/size/batch: ms per step with and without the check."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=100)
    a = p.parse_args(argv)
    dev = training_device()
    bf16 = resolve_precision("auto", dev) == "bf16"
    print(f"device {dev}, {'bf16' if bf16 else 'fp32'}, torch {torch.__version__}")
    for name, size, bs in CASES:
        enc = create_encoder(name, in_chans=1, img_size=size).to(dev)
        head = torch.nn.Linear(enc.num_features, 2).to(dev)
        opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=1e-3)
        x, y = torch.rand(bs, 1, size, size, device=dev), torch.randint(0, 2, (bs,), device=dev)
        best = {}
        for check in (True, False, True, False):
            def step():
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = torch.nn.functional.cross_entropy(head(enc(x, check=check)).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            for _ in range(5):
                step()
            _sync(dev)
            t = time.perf_counter()
            for _ in range(a.steps):
                step()
            _sync(dev)
            best[check] = min(best.get(check, float("inf")), (time.perf_counter() - t) / a.steps * 1e3)
        on, off = best[True], best[False]
        print(f"{name} {size}px batch {bs}: {on:.2f} ms per step with the check, {off:.2f} ms without "
              f"({(on / off - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
