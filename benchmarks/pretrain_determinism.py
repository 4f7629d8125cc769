"""Print whether pretraining recipes write byte-identical checkpoints run after run on this device,
with ``train.deterministic: true`` (two runs) and ``false`` (one run).

Usage: python benchmarks/pretrain_determinism.py [--recipes pretrain/a.yaml ...] [--epochs 1] [--data-root DIR]
Each recipe is run for ``--epochs`` epochs in fp32 (where GPU kernels part run to run; bf16 did not,
see ``gpu_determinism.py``) with ``checkpoint_every: 0``; the line says whether the two deterministic
runs' ``model.safetensors`` have the same sha256, how many weight tensors differ, and whether the
run without deterministic kernels differs from them. The default recipes are the PneumoniaMNIST ones.

On an H200 (torch 2.11, 2026-11-22, second session; the scratch script this one was cleaned up from,
same overrides and sha256 comparison), 1 epoch each (18 steps): SimCLR, MoCo, SwAV and graph matching
with ResNet-18 and SimCLR with ViT-Tiny wrote identical files with ``deterministic: true`` and
different ones without. A scratch variant ran the corpus recipes the same way (CLIP with ResNet-18
and ViT-Tiny, graph matching with ViT-Tiny; the corpus built from the MedMNIST source only and a
2-layer random BERT as the text model, since the whole data root and MiniLM do not fit the device's
upload): identical too. No op of these objectives raised ``DeterminismError``. On a CPU every run is
identical.
"""
import argparse
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPES = [f"pretrain/{n}_pneumoniamnist.yaml" for n in
                   ("simclr_resnet18", "moco_resnet18", "swav_resnet18", "graph_matching_resnet18", "simclr_vit_tiny")]


def _run(path: Path, deterministic: bool, epochs: int, data_root: Optional[str],
         output: Path) -> Tuple[str, Dict[str, torch.Tensor], float]:
    from safetensors.torch import load_file

    from medfm.config import from_dict, load_yaml, with_overrides
    from medfm.training.recipes import PretrainRecipe
    from medfm.training.runs import run_pretrain

    data = with_overrides(load_yaml(path), {"train": {"epochs": epochs, "precision": "fp32", "checkpoint_every": 0,
                                                      "deterministic": deterministic}})
    t = time.perf_counter()
    ckpt = run_pretrain(from_dict(PretrainRecipe, data, where=path.name), output, data_root=data_root)
    weights = ckpt / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest(), load_file(str(weights)), time.perf_counter() - t


def main(argv: Optional[List[str]] = None) -> None:
    """Print one line per recipe.

    Raises:
        SystemExit: 2 with one line for a missing recipe file or ``--epochs`` below 1.
    """
    from medfm.cli_parser import positive_int  # one-line argparse errors

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", default=DEFAULT_RECIPES, help="pretrain recipe files")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--data-root", default=None, help="default: $MEDFM_DATA")
    a = p.parse_args(argv)
    paths = [Path(r) if Path(r).is_file() else REPO / r for r in a.recipes]
    missing = [str(r) for r, path in zip(a.recipes, paths) if not path.is_file()]
    if missing:
        p.error(f"--recipes: no recipe file {missing[0]}")
    for path in paths:
        with tempfile.TemporaryDirectory() as tmp:
            (h1, w1, t1), (h2, w2, t2), (h3, _, t3) = (
                _run(path, det, a.epochs, a.data_root, Path(tmp) / name)
                for name, det in (("a", True), ("b", True), ("c", False)))
            differ = sum(not torch.equal(w1[k], w2[k]) for k in w1)
            print(f"{path.stem}: deterministic runs {'identical' if h1 == h2 else 'DIFFER'} ({differ} of {len(w1)} "
                  f"tensors differ; {t1:.1f} s, {t2:.1f} s); the run without deterministic kernels "
                  f"{'matches' if h3 == h1 else 'differs'} ({t3:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
