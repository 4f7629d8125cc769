"""Encoder families side by side: full fine-tuning from random init on MedMNIST 2D at 28 px.

For every encoder (default: one or two per family: CNN ``resnet18``, ViT ``vit_tiny``, KAN
``medvit_kan_tiny`` and ``kan_resnet18``, Mamba ``vmamba_tiny`` and ``groupmamba_tiny``) and
data set it runs, each in a fresh process, exactly what a user would::

    medfm finetune finetune/families/full_<encoder>.yaml --dataset <flag> --epochs <E> --output <out>/<flag>/<encoder>
    medfm eval <out>/<flag>/<encoder>/model --data <flag> --split test --output <out>/<flag>/<encoder>/eval

The shared budget is the number of training images seen (about 9.4k: PneumoniaMNIST 2
epochs of 4,708, BreastMNIST 17 epochs of 546), batch 64, AdamW, bf16 autocast where the CPU
supports it; the test split is scored with the last epoch's model (no model selection).
A finished pair (its ``eval/results.json`` exists) is not re-run, and a pair cut off during
fine-tuning or evaluation continues from its ``checkpoint/`` (``medfm finetune --resume``; its
``timing.json`` then says ``"resumed": true``), so the script resumes.

It prints, and writes to ``<out>/family_table.md`` and ``<out>/family_table.json``
(atomically), test ACC/AUC per pair beside MedMNIST v2's ResNet-18 (28) row; the JSON also
holds the bootstrap 95% CIs and each run's wall time (which depends on the machine's load: compare
speeds with ``benchmarks/encoders.py``, not with these times). Not a test: a measurement script.

Usage::

    python benchmarks/family_finetune.py [--datasets pneumoniamnist,breastmnist]
        [--encoders resnet18,vit_tiny,...] [--output runs/families] [--threads N]

Each recipe sets ``train.num_threads: 1`` (another count gives other weights for the same seed). The documented
table was not measured with one count for every row: its BreastMNIST resnet18 row needs ``--threads 2``, its
PneumoniaMNIST vit_tiny row is one test image off on one thread and six on two, PneumoniaMNIST resnet18 is the same on
both, medvit_kan_tiny's rows are nearest one thread but not exact, and the other seven rows reproduce exactly on
one thread (``docs/encoder_families.md``). ``--threads N`` trains from a copy of the recipe with ``num_threads: N``,
written into the pair's run folder (``recipe.yaml``), and runs the evaluation with N threads.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
FAMILY_RECIPES = REPO / "finetune" / "families"
sys.path.insert(0, str(REPO))

from medfm.cli_parser import positive_int  # noqa: E402
from medfm.config import dump_yaml, load_yaml, with_overrides  # noqa: E402
from medfm.evaluation.evaluate import MEDMNIST_V2_RESNET18_28  # noqa: E402
from medfm.io import atomic_write_json, atomic_write_text  # noqa: E402
from medfm.registry import close_match_hint  # noqa: E402
from medfm.training.state import STATE_JSON  # noqa: E402

ENCODERS = ("resnet18", "vit_tiny", "medvit_kan_tiny", "kan_resnet18", "vmamba_tiny", "groupmamba_tiny")
#: epochs per data set giving about the same number of training images seen (~9.4k)
EPOCHS = {"pneumoniamnist": 2, "breastmnist": 17}


def _medfm(args: List[str], env: Dict[str, str], log: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; from medfm.cli import main; sys.exit(main())", *args]
    with open(log, "a") as fh:
        fh.write("$ medfm " + " ".join(args) + "\n")
        fh.flush()
        rc = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    if rc != 0:
        raise SystemExit(f"medfm {' '.join(args)} failed with exit code {rc}; see {log}")


def _recipe(encoder: str) -> Path:
    """``finetune/families/full_<encoder>.yaml``: the recipe of one table row."""
    return FAMILY_RECIPES / f"full_{encoder}.yaml"


def _pair_recipe(encoder: str, run: Path, threads: Optional[int]) -> Path:
    """The recipe a pair trains with: :func:`_recipe`, or with ``threads`` a copy of it whose ``train.num_threads``
    is ``threads``, written (atomically) to ``run/recipe.yaml``."""
    if threads is None:
        return _recipe(encoder)
    recipe = with_overrides(load_yaml(_recipe(encoder)), {"train": {"num_threads": threads}})
    atomic_write_text(run / "recipe.yaml", dump_yaml(recipe))
    return run / "recipe.yaml"


def run_pair(encoder: str, flag: str, out: Path, env: Dict[str, str], threads: Optional[int] = None) -> Dict[str, Any]:
    """Fine-tune + evaluate one (encoder, data set) pair; returns its table row. ``threads``: train with that
    many torch threads (:func:`_pair_recipe`) and evaluate with them; None: the recipe's count."""
    run = out / flag / encoder
    results = run / "eval" / "results.json"
    timing = run / "timing.json"
    if not results.is_file():
        run.mkdir(parents=True, exist_ok=True)
        log = run / "log.txt"
        resumed = (run / "checkpoint" / STATE_JSON).is_file()  # cut off in fine-tuning or evaluation
        t0 = time.perf_counter()
        _medfm(["finetune", str(_pair_recipe(encoder, run, threads)), "--dataset", flag, "--epochs", str(EPOCHS[flag]),
                "--output", str(run), *(["--resume"] if resumed else [])], env, log)
        t1 = time.perf_counter()
        _medfm(["eval", str(run / "model"), "--data", flag, "--split", "test", "--output", str(run / "eval"),
                *([] if threads is None else ["--threads", str(threads)])], env, log)
        atomic_write_json(timing, {"finetune_s": t1 - t0, "eval_s": time.perf_counter() - t1, "resumed": resumed})
    res = json.loads(results.read_text())
    config = json.loads((run / "model" / "config.json").read_text())
    t = json.loads(timing.read_text()) if timing.is_file() else {}
    return {"encoder": encoder, "family": config.get("family"), "dataset": flag, "epochs": EPOCHS[flag],
            "n_params": config.get("n_params"), "acc": res["metrics"]["acc"], "auc": res["metrics"]["auc"],
            "acc_ci": res["ci"].get("acc"), "auc_ci": res["ci"].get("auc"), "finetune_s": t.get("finetune_s")}


def _fmt_params(n: Any) -> str:
    if isinstance(n, str):
        return n
    if isinstance(n, dict):
        n = n.get("total", n.get("trainable"))
    return f"{n / 1e6:.2f}M" if isinstance(n, (int, float)) else "?"


def table(rows: List[Dict[str, Any]], datasets: List[str]) -> str:
    """Markdown: one row per encoder, ACC/AUC per data set, then the MedMNIST v2 reference row."""
    head = "| encoder | family | params | " + " | ".join(f"{d} ACC | {d} AUC" for d in datasets) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(datasets))]
    by = {(r["encoder"], r["dataset"]): r for r in rows}
    for enc in dict.fromkeys(r["encoder"] for r in rows):
        cells, params, family = [], "?", "?"
        for d in datasets:
            r = by.get((enc, d))
            if r is None:
                cells += ["-", "-"]
                continue
            family, params = r["family"], _fmt_params(r["n_params"])
            cells += [f"{r['acc']:.3f}", f"{r['auc']:.3f}"]
        lines.append(f"| {enc} | {family} | {params} | " + " | ".join(cells) + " |")
    ref = []
    for d in datasets:
        r = MEDMNIST_V2_RESNET18_28.get(d) or {}
        ref += [f"{r['acc']:.3f}" if "acc" in r else "-", f"{r['auc']:.3f}" if "auc" in r else "-"]
    lines.append("| MedMNIST v2 ResNet-18 (28), 100 epochs | cnn | 11.2M | " + " | ".join(ref) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv``, run the missing pairs, print and write the table. Bad arguments (a data
    set without a shared-budget epoch count, an encoder without a ``finetune/families`` recipe,
    an empty list) exit 2 with one line, before any run folder is made."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="pneumoniamnist,breastmnist")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--output", type=Path, default=REPO / "runs" / "families")
    ap.add_argument("--threads", type=positive_int, default=None,
                    help="torch threads of each run (default: the recipes' train.num_threads, 1)")
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if not datasets or not encoders:
        ap.error("--datasets and --encoders must each name at least one")
    for d in datasets:
        if d not in EPOCHS:
            ap.error(f"no shared-budget epochs for data set {d!r}{close_match_hint(d, sorted(EPOCHS))}")
    recipes = sorted(f.stem[len("full_"):] for f in FAMILY_RECIPES.glob("full_*.yaml"))
    for e in encoders:
        if not _recipe(e).is_file():
            ap.error(f"no recipe {_recipe(e).relative_to(REPO)} for encoder {e!r}{close_match_hint(e, recipes)}")
    env = dict(os.environ) if args.threads is None else {**os.environ, "OMP_NUM_THREADS": str(args.threads),
                                                          "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for flag in datasets:
        for enc in encoders:
            rows.append(run_pair(enc, flag, args.output, env, args.threads))
            r = rows[-1]
            print(f"{enc:18s} {flag:15s} ACC {r['acc']:.3f} AUC {r['auc']:.3f} ({r['finetune_s'] or 0:.0f} s)", flush=True)
    md = table(rows, datasets)
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output / "family_table.md", md)
    atomic_write_json(args.output / "family_table.json", rows)
    print(md)


if __name__ == "__main__":
    main()
