"""Print medfm's training images/s next to a bare torch loop over the same timm model and batch.

Usage: python benchmarks/train_throughput.py [--encoder resnet18] [--img-size 28] [--batch-size 128]
       [--steps 20] [--precision auto|bf16|fp32]
The spine issue asks for a ratio >= 0.9. Run it on an otherwise idle machine.
"""
import argparse
from typing import List, Optional

from medfm.benchmark import compare_throughput
from medfm.training.loop import resolve_precision, training_device
from medfm.registry import UnknownNameError


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` and print one table per precision; bad arguments exit 2 with one line."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    a = p.parse_args(argv)
    try:
        # "auto": fp32, then the machine's autocast precision when that is bf16 (not fp32 twice)
        auto = resolve_precision("auto", training_device())
        for precision in ([a.precision] if a.precision != "auto" else ["fp32"] + (["bf16"] if auto == "bf16" else [])):
            compare_throughput(a.encoder, a.img_size, a.batch_size, a.steps, precision)
    except (UnknownNameError, ValueError) as err:  # one line, not a traceback
        p.error(str(err))


if __name__ == "__main__":
    main()
