"""The ``medfm`` command: ``pretrain | finetune | segment | vqa | fuse | eval | merge | card | push | bench``.

Every subcommand is a thin layer over the library; errors medfm anticipates (bad recipe,
missing data, mismatched checkpoint) print one line ``medfm: error: ...`` and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medfm", description="Medical foundation models: pretrain, adapt, evaluate, share.")
    sub = p.add_subparsers(dest="command", required=True)

    def data_root(sp):
        sp.add_argument("--data-root", default=None, help="data folder (default: $MEDFM_DATA, else ~/.cache/medfm)")

    def recipe_command(name: str, help: str, init: bool = True, resume: str = "continue from <output>/checkpoint"):
        """A subcommand that runs a recipe: ``<recipe> --output DIR [--init] [--resume] [--epochs N] [--data-root]``."""
        sp = sub.add_parser(name, help=help)
        sp.add_argument("recipe", type=Path)
        if init:
            sp.add_argument("--init", default=None, help="medfm checkpoint whose encoder initialises the model")
        sp.add_argument("--output", type=Path, required=True)
        if resume:
            sp.add_argument("--resume", action="store_true", help=resume)
        sp.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
        data_root(sp)
        return sp

    recipe_command("pretrain", "self-supervised pretraining from a recipe", init=False)
    sp = recipe_command("finetune", "fine-tune a classifier (linear, full or LoRA) from a recipe")
    sp.add_argument("--dataset", default=None, help="override data.dataset (MedMNIST flag)")
    sp.add_argument("--label-fraction", type=float, default=None,
                    help="override data.label_fraction: train on this stratified, seeded fraction of the labels")
    recipe_command("segment", "train + evaluate a segmentation adapter from a recipe (finetune/seg_*.yaml)")
    recipe_command("vqa", "train + evaluate a VQA adapter on VQA-RAD from a recipe (finetune/vqa_*.yaml)",
                   resume="continue from <output>/train_state (the last finished epoch)")
    recipe_command("fuse", "train + evaluate missing-modality fusers on TCGA-LGG (finetune/fusion_lgg_*.yaml)",
                   init=False, resume="continue unfinished models; reuse finished ones")

    sp = sub.add_parser("eval", help="evaluate checkpoint(s) on a dataset split (--data) or a suite (--suite)")
    sp.add_argument("checkpoint", nargs="*", help="checkpoint dir(s) or hf-hub: id(s); --data takes exactly one")
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--data", default=None, help="MedMNIST flag, e.g. pneumoniamnist")
    which.add_argument("--suite", type=Path, default=None, help="evaluation suite, e.g. eval_suites/medmnist_c.yaml")
    sp.add_argument("--split", default=None, choices=["train", "val", "test"], help="--data only (default: test)")
    sp.add_argument("--size", type=positive_int, default=None, help="--data only")
    sp.add_argument("--protocol", default=None, choices=["as-is", "linear", "knn", "finetune", "zeroshot"],
                    help="override the suite's protocol; finetune: train the encoder + a new head on each label "
                         "fraction, then score; zeroshot: a CLIP checkpoint on --data with class prompts")
    sp.add_argument("--label-fraction", default=None, help="comma list of label fractions for linear/knn/finetune, e.g. 0.01,0.1,1")
    sp.add_argument("--probe-c", default=None,
                    help="linear probe's inverse L2 strength C, or 'val' to choose it on the val split (CLIP protocol)")
    sp.add_argument("--cache-dir", default=None, help="corrupted-set cache root (default ~/.cache/medfm)")
    sp.add_argument("--workers", type=non_negative_int, default=None,
                    help="override corruptions.workers (processes; 0 or 1: in this process)")
    sp.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads for inference (default: torch's)")
    sp.add_argument("--max-samples", type=positive_int, default=None,
                    help="score a fixed class-stratified subset of at most N images of each data set's split (the same "
                         "images clean and corrupted; reports say so); overrides datasets[].max_samples")
    sp.add_argument("--output", type=Path, default=None,
                    help="output folder (default: <checkpoint>/eval-<flag>-<split> with --data, <checkpoint>/eval-<suite> "
                         "with --suite); an earlier evaluation of the same mode there is replaced as a whole, any other "
                         "non-empty folder is refused")
    sp.add_argument("--batch-size", type=positive_int, default=None, help="inference batch size (default: the suite's, 64; 256 with --data)")
    data_root(sp)

    sp = sub.add_parser("merge", help="fold a LoRA adapter into its base and save a full checkpoint")
    sp.add_argument("adapter")
    sp.add_argument("output", type=Path)
    sp.add_argument("--base", default=None, help="override the base checkpoint recorded in the adapter")

    sp = sub.add_parser("card", help="rewrite a checkpoint's model card with evaluation results")
    sp.add_argument("checkpoint")
    sp.add_argument("--results", type=Path, required=True)

    sp = sub.add_parser("push", help="upload a checkpoint to the Hugging Face hub")
    sp.add_argument("checkpoint")
    sp.add_argument("repo_id")
    sp.add_argument("--private", action="store_true")
    sp.add_argument("--include", action="append", default=[], metavar="GLOB",
                    help="also upload files matching GLOB, relative to the checkpoint (repeatable; e.g. "
                         "'eval-*/results.json'); by default only config, weights, card and adapter files go up")

    sp = sub.add_parser("verify-data", help="check data set folders against their SHA256SUMS, and medmnist/*.npz "
                                            "against the md5s its loader checks (exit 1 on a missing or changed file)")
    sp.add_argument("datasets", nargs="*",
                    help="folders under the data root (default: every one with a SHA256SUMS, and medmnist/)")
    data_root(sp)

    sp = sub.add_parser("bench", help="training throughput: medfm loop vs a bare torch loop")
    sp.add_argument("--encoder", default="resnet18")
    sp.add_argument("--img-size", type=positive_int, default=28)
    sp.add_argument("--batch-size", type=positive_int, default=128)
    sp.add_argument("--steps", type=positive_int, default=20)
    sp.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    return p


def _int_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer >= ``minimum``, or a one-line argparse error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def _load_recipe(cls, path: Path, epochs: Optional[int], dataset: Optional[str] = None,
                 label_fraction: Optional[float] = None):
    """Load a pretrain/finetune recipe; its encoder/objective ``args`` are checked against the builders.

    Raises:
        ConfigError: unknown keys or arguments (with close matches), wrong types, bad values
            (a bad ``--label-fraction`` is named as the flag).
    """
    from medfm.config import ConfigError, check_call_args, from_dict, load_yaml, with_overrides
    from medfm.registry import ENCODERS, OBJECTIVES

    if label_fraction is not None and not 0 < label_fraction <= 1:  # named as the flag, not as the recipe's key
        raise ConfigError(f"--label-fraction: label_fraction must be in (0, 1], got {label_fraction}")
    data = with_overrides(load_yaml(path), {"train": {"epochs": epochs},
                                            "data": {"dataset": dataset, "label_fraction": label_fraction}})
    recipe = from_dict(cls, data, where=path.name)
    check_call_args(ENCODERS.get(recipe.encoder.name), recipe.encoder.args, f"{path.name}.encoder.args",
                    provided=("in_chans", "img_size"))
    objective = getattr(recipe, "objective", None)
    if objective is not None:
        check_call_args(OBJECTIVES.get(objective.name), objective.args, f"{path.name}.objective.args",
                        provided=("encoder",))
    return recipe


def _check_new_output(path: Path) -> None:
    """Refuse to write a checkpoint over an existing non-empty directory or file.

    Raises:
        FileExistsError: ``path`` is a file or a non-empty directory (saving would replace it whole).
    """
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not empty; choose another output or delete it first")


#: ``medfm eval`` options that apply to one mode only, with their defaults
_DATA_ONLY = {"split": None, "size": None}
_SUITE_ONLY = {"label_fraction": None, "probe_c": None, "workers": None, "cache_dir": None, "max_samples": None}


def _check_eval_options(args: argparse.Namespace) -> None:
    """Refuse options that the chosen ``eval`` mode would ignore (they used to be dropped silently).

    Raises:
        ValueError: a ``--suite`` option with ``--data`` or the reverse.
    """
    if args.data is not None:
        given = [k for k, v in _SUITE_ONLY.items() if getattr(args, k) != v]
        if given:
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ValueError(f"{names}: --suite option(s); --data scores one checkpoint on one split")
    if args.suite is not None:
        given = [k for k, v in _DATA_ONLY.items() if getattr(args, k) != v]
        if given:
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ValueError(f"{names}: --data option(s); a suite sets split and size per dataset in its YAML")


def _num(value: Optional[float], spec: str = ".4f") -> str:
    """A metric for the console: ``format(value, spec)``, or ``n/a`` when it is undefined (None/NaN,
    e.g. the AUC of a split holding one class, which used to end ``medfm eval`` with a TypeError)."""
    if value is None or value != value:
        return "n/a"
    return format(value, spec)


def _eval(args: argparse.Namespace) -> None:
    """``medfm eval``: one dataset split (``--data``) or a suite (``--suite``).

    Raises:
        ValueError: a suite with no checkpoint on the command line nor
            in its datasets (every dataset used to be skipped, exit 0); no ``--output`` and no
            local checkpoint to put the results next to. CheckpointError: that checkpoint is
            missing (checked before its ``eval-<suite>`` folder is created). DataFileMissingError:
            no dataset of the suite is on disk (:func:`medfm.evaluation.suites.run_suite`; it used
            to exit 0 having evaluated nothing); a suite with some on disk lists the others as skipped;
            ValueError: every dataset skipped (e.g. no checkpoint for its classes), with each reason.
            FileExistsError: a non-empty ``--output`` holding no earlier evaluation of the same mode
            (one that does is replaced whole: :func:`medfm.evaluation.suites.run_suite`,
            :func:`medfm.evaluation.evaluate.evaluate_checkpoint`), or, with ``--data``, a checkpoint.
            Options of the other mode, and with ``--data`` a missing local checkpoint, are refused
            before this runs (:func:`_check_paths`).
    """
    args.split = args.split or "test"
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.protocol == "zeroshot":
        from medfm.evaluation.zeroshot import zeroshot_eval

        if args.data is None or len(args.checkpoint) != 1:
            raise ValueError("--protocol zeroshot scores exactly one image-text checkpoint on --data <MedMNIST flag>")
        res = zeroshot_eval(args.checkpoint[0], args.data, split=args.split, data_root=args.data_root,
                            output=args.output, batch_size=args.batch_size or 256, size=args.size)
        m, ch = res["metrics"], res["meta"]["chance"]
        print(f"{args.data} {args.split} zero-shot: ACC {_num(m['acc'])}  AUC {_num(m['auc'])}  (chance ACC "
              f"{ch['acc_uniform']:.4f}, majority class {ch['acc_majority']:.4f}, AUC {ch['auc']:.1f})")
        return
    if args.data is not None:
        from medfm.evaluation.evaluate import evaluate_checkpoint

        if len(args.checkpoint) != 1 or args.protocol not in (None, "as-is"):
            raise ValueError("--data evaluates exactly one classifier checkpoint as it is (use --suite for more)")
        res = evaluate_checkpoint(args.checkpoint[0], args.data, split=args.split, size=args.size,
                                  data_root=args.data_root, output=args.output, batch_size=args.batch_size or 256)
        m = res["metrics"]
        print(f"{args.data} {args.split}: ACC {_num(m['acc'])}  AUC {_num(m['auc'])}  balanced ACC {_num(m['balanced_acc'])}")
        for w in res.get("warnings", []):  # also in results.json and report.md
            print(f"warning: {w}")
        return
    from medfm.checkpoint_ids import is_hub_id
    from medfm.evaluation.suites import earlier_suite_report, load_suite, run_suite, suite_overrides

    suite = suite_overrides(load_suite(args.suite), protocol=args.protocol, label_fractions=args.label_fraction,
                            workers=args.workers, batch_size=args.batch_size, probe_c=args.probe_c,
                            max_samples=args.max_samples)
    if not args.checkpoint and not any(d.checkpoint for d in suite.datasets):
        raise ValueError(f"no checkpoint to evaluate: pass one or more on the command line (or set "
                         f"datasets[].checkpoint in {args.suite.name})")
    if args.output is not None:
        output = args.output
    elif args.checkpoint and not is_hub_id(args.checkpoint[0]):
        from medfm.hub import resolve_checkpoint

        # the results go next to the checkpoint: a mistyped path must not become a new folder
        output = resolve_checkpoint(args.checkpoint[0]) / f"eval-{suite.name}"
    else:
        raise ValueError("pass --output (no local checkpoint given to put the results next to)")
    replaced = earlier_suite_report(Path(output))  # refuses a folder holding anything else, before any work
    res = run_suite(suite, args.checkpoint, output, data_root=args.data_root, cache_dir=args.cache_dir)
    for d in res["datasets"]:
        if d["status"] != "ok":
            print(f"{d['name']}: skipped ({d['reason']})")
            continue
        for r in d["runs"]:
            rob = r.get("robustness") or {}
            extra = f"  BE {_num(rob['be'], '.3f')}  rBE {_num(rob['rbe'], '.3f')}" if rob.get("be") is not None else ""
            if r.get("train_labels"):
                extra += f"  ({r['train_labels']['n']} {r['train_labels']['split']} labels)"
            print(f"{d['name']} [{r['run']}]: ACC {_num(r['metrics']['acc'])}  AUC {_num(r['metrics']['auc'])}{extra}")
            for w in r.get("warnings", []):
                print(f"  warning: {w}")
        if d.get("subset"):
            print(f"  scored {d['subset']['n']} of {d['subset']['of']} {d['split']} images (max_samples)")
    if res.get("unused_checkpoints"):
        print(f"not used by any data set: {', '.join(res['unused_checkpoints'])}")
    print(f"suite {suite.name}: {res['wall_s']:.1f} s; report: {Path(output) / 'report.md'}"
          + (" (replaced the earlier evaluation there)" if replaced else ""))


def _run(args: argparse.Namespace) -> int:
    if args.command == "pretrain":
        from medfm.training.recipes import PretrainRecipe
        from medfm.training.runs import run_pretrain

        recipe = _load_recipe(PretrainRecipe, args.recipe, args.epochs)
        out = run_pretrain(recipe, args.output, data_root=args.data_root, resume=args.resume)
        print(f"pretrained checkpoint: {out}")
    elif args.command == "finetune":
        from medfm.training.recipes import FinetuneRecipe
        from medfm.training.runs import run_finetune

        recipe = _load_recipe(FinetuneRecipe, args.recipe, args.epochs, args.dataset, args.label_fraction)
        out = run_finetune(recipe, args.output, init=args.init, data_root=args.data_root, resume=args.resume)
        print(f"fine-tuned checkpoint: {out}")
    elif args.command == "segment":
        from medfm.training.segmentation import segment_from_recipe

        print(segment_from_recipe(args.recipe, args.output, epochs=args.epochs, init=args.init,
                                  data_root=args.data_root, resume=args.resume))
    elif args.command == "vqa":
        from medfm.training.vqa import load_vqa_recipe, run_vqa

        res = run_vqa(load_vqa_recipe(args.recipe, args.epochs), args.output, init=args.init, data_root=args.data_root,
                      resume=args.resume)
        m = res["metrics"]
        print("VQA-RAD test: " + "  ".join(f"{k} {100 * m[k]['acc']:.1f}% [{100 * m[k]['ci']['low']:.1f}, "
                                             f"{100 * m[k]['ci']['high']:.1f}]" for k in ("closed", "open", "overall")))
        print(f"report: {args.output / 'report.md'}")
    elif args.command == "fuse":
        from medfm.training.fusion import fuse_from_recipe

        print(fuse_from_recipe(args.recipe, args.output, args.epochs, args.data_root, args.resume))
    elif args.command == "eval":
        _eval(args)
    elif args.command == "merge":
        from medfm.adapters.lora import merge_adapter
        from medfm.hub import ADAPTER_CONFIG_NAME, CONFIG_NAME

        adapter = Path(args.adapter)
        if (adapter / CONFIG_NAME).is_file() and not (adapter / ADAPTER_CONFIG_NAME).is_file():
            raise ValueError(f"{args.adapter} is a full medfm checkpoint, not a LoRA adapter (no {ADAPTER_CONFIG_NAME}); "
                             "merge takes the adapter/ folder of a LoRA fine-tune")
        print(f"merged checkpoint: {merge_adapter(args.adapter, args.output, args.base)}")
    elif args.command == "card":
        from medfm.cards import update_card

        print(f"model card: {update_card(args.checkpoint, args.results)}")
    elif args.command == "push":
        from medfm.hub import push_selection, push_to_hub, resolve_checkpoint

        url = push_to_hub(args.checkpoint, args.repo_id, private=args.private, include=args.include)
        uploaded, left_out = push_selection(resolve_checkpoint(args.checkpoint), args.include)
        print(f"uploaded {len(uploaded)} files: {', '.join(uploaded)}")
        if left_out:
            print(f"kept local {len(left_out)} files (add --include GLOB to upload them): "
                  f"{', '.join(left_out[:8])}{' ...' if len(left_out) > 8 else ''}")
        print(url)
    elif args.command == "verify-data":
        return _verify_data(args)
    elif args.command == "bench":
        from medfm.benchmark import compare_throughput

        compare_throughput(args.encoder, args.img_size, args.batch_size, args.steps, args.precision)
    return 0


def _verify_data(args: argparse.Namespace) -> int:
    """``medfm verify-data``: one line per data set; 0 when every checked file matches, else 1.

    Folders with a ``SHA256SUMS`` report ok / missing / changed files; ``medmnist/`` reports ok /
    changed / unknown ``*.npz`` (:func:`medfm.data.checksums.verify_medmnist_md5s`: an unknown name
    is listed but, as with ``sha256sum -c``, is no failure).

    Raises:
        MedFMDataError: no data root, an unknown data set folder, or a missing/malformed SHA256SUMS.
    """
    from medfm.data.checksums import data_sets_to_verify, verify_data_set
    from medfm.data.errors import UnknownDatasetError
    from medfm.data.root import resolve_data_root

    folders = data_sets_to_verify(args.data_root)
    if args.datasets:
        names = {p.name: p for p in folders}
        for name in args.datasets:
            if name not in names:
                raise UnknownDatasetError.for_name(name, names, kind="data set folder with a SHA256SUMS (or medmnist/)")
        folders = [names[n] for n in args.datasets]
    if not folders:
        print(f"no data set folder with a SHA256SUMS, nor medmnist/, under {resolve_data_root(args.data_root)}")
        return 1
    bad = 0
    for folder in folders:
        report = verify_data_set(folder, progress=True)
        problems = report.get("missing", []) + report["mismatched"]
        bad += len(problems)
        labels = (("ok", "ok"), ("missing", "missing"), ("mismatched", "changed"), ("unknown", "unknown"))
        line = f"{folder.name}: " + ", ".join(f"{len(report[k])} {label}" for k, label in labels if k in report)
        line += f" (e.g. {', '.join(problems[:3])})" if problems else ""
        unknown = report.get("unknown", [])
        if unknown:
            line += (f"; unknown (no released MedMNIST file name, not checked): {', '.join(unknown[:3])}"
                     + (" ..." if len(unknown) > 3 else ""))
        print(line)
    return 1 if bad else 0


#: subcommands whose ``--output`` is a run folder (created by the run)
_OUTPUT_COMMANDS = ("pretrain", "finetune", "segment", "vqa", "fuse", "eval")
#: subcommand -> its positional argument naming checkpoint (or LoRA adapter) folder(s)
_CHECKPOINT_ARGS = {"eval": "checkpoint", "merge": "adapter", "card": "checkpoint", "push": "checkpoint"}


def _check_checkpoint_paths(args: argparse.Namespace) -> None:
    """A local checkpoint (or adapter) path that does not exist, named before torch is imported
    (seconds sooner), in the words of :func:`medfm.hub.resolve_checkpoint`.

    ``hf-hub:`` ids pass (fetched later), as does every path that exists: a file, or a folder that
    holds no checkpoint, is named by the later checks (:func:`medfm.hub.resolve_checkpoint`,
    :func:`medfm.hub.load_config`).

    Raises:
        ValueError: the first missing path.
    """
    if args.command not in _CHECKPOINT_ARGS:
        return
    from medfm.checkpoint_ids import is_hub_id, missing_checkpoint_message

    given = getattr(args, _CHECKPOINT_ARGS[args.command])
    for ident in given if isinstance(given, list) else [given]:
        if not is_hub_id(ident) and not Path(ident).expanduser().exists():
            raise ValueError(missing_checkpoint_message(ident))


def _check_paths(args: argparse.Namespace) -> None:
    """Path options checked before anything is loaded or written, and before torch is imported
    (the imports take seconds: a mistyped recipe or checkpoint path is named before them).

    Raises:
        ValueError: ``--data-root`` is not a directory (the CLI never downloads into it), or
            ``--output`` is an existing file; ``eval`` options of the other mode
            (:func:`_check_eval_options`); a missing checkpoint path (:func:`_check_checkpoint_paths`).
        ConfigError: a recipe (or ``--suite``) file that is missing, a folder or not a YAML mapping
            (:func:`medfm.config.load_yaml`).
        FileExistsError: ``merge`` into a non-empty folder (:func:`_check_new_output`).
    """
    from medfm.config import load_yaml

    for yaml_file in (getattr(args, "recipe", None), getattr(args, "suite", None)):
        if yaml_file is not None:
            load_yaml(yaml_file)  # missing, a folder, not YAML: one line now rather than after the imports
    root = getattr(args, "data_root", None)
    if root and not Path(root).expanduser().is_dir():
        what = "is a file" if Path(root).expanduser().exists() else "does not exist"
        raise ValueError(f"--data-root {root} {what}; it is the folder that holds the data set folders "
                         "(medmnist/, chase_db1/, ...)")
    output = getattr(args, "output", None)
    if args.command in _OUTPUT_COMMANDS and output is not None and Path(output).is_file():
        raise ValueError(f"--output {output} is a file; the run writes a folder there: choose another path")
    if args.command == "eval":
        _check_eval_options(args)
    if args.command == "merge":
        _check_new_output(args.output)
    _check_checkpoint_paths(args)  # after the checks above, which name the other mistakes first


def _discard_failed_output(output: Optional[Path]) -> None:
    """Remove ``output``, a folder this command created, after the run failed before it trained
    a single logged step: no half-written run folder is left (e.g. only ``config.yaml`` and an
    empty ``metrics.jsonl``). A folder with a training state (for ``--resume``) or a non-empty
    ``metrics.jsonl`` (the curve of a run that diverged is what a user debugs) is kept."""
    import shutil

    if output is None or not output.is_dir():  # before importing torch (via the state module)
        return
    from medfm.training.state import STATE_JSON

    if any(output.rglob(STATE_JSON)):
        return
    if any(log.stat().st_size > 0 for log in output.rglob("metrics.jsonl")):
        return
    shutil.rmtree(output, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``medfm`` console script; returns the exit code.

    Errors medfm anticipates print one line ``medfm: error: ...`` and return 2; a run folder
    (``--output``) that this command created is then removed unless it holds a training state.
    Ctrl-C prints ``medfm: interrupted`` (with a ``--resume`` hint when a training state was
    saved) and returns 130, the shell's code for SIGINT, with the same clean-up.
    """
    args = _parser().parse_args(argv)  # before importing torch: --help and usage errors answer at once
    from medfm.config import ConfigError  # light imports: a bad path is answered before torch loads
    from medfm.data.errors import MedFMDataError
    from medfm.registry import UnknownNameError

    output = getattr(args, "output", None) if args.command in _OUTPUT_COMMANDS else None
    new_output = Path(output) if output is not None and not Path(output).exists() else None
    try:
        _check_paths(args)
        return _run(args)
    except (ConfigError, MedFMDataError, UnknownNameError, OSError, ValueError) as err:
        # CheckpointError is a ValueError; OSError: unwritable/missing paths, a full disk, an output that exists
        _discard_failed_output(new_output)
        print(f"medfm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback from wherever torch was
        _discard_failed_output(new_output)
        from medfm.training.state import STATE_JSON

        kept = output is not None and Path(output).is_dir() and any(Path(output).rglob(STATE_JSON))
        print("medfm: interrupted" + (f"; continue with the same command and --resume ({output})" if kept else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
