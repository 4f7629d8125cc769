"""The ``medfm`` command:
``pretrain | finetune | segment | vqa | fuse | eval | merge | card | push | verify-data | bench``.

Every subcommand is a thin layer over the library; errors medfm anticipates (bad recipe,
missing data, mismatched checkpoint) print one line ``medfm: error: ...`` and exit 2. The
arguments of each subcommand are defined in :mod:`medfm.cli_parser`; this module checks them
and runs the command.
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

from medfm.cli_checks import OUTPUT_COMMANDS as _OUTPUT_COMMANDS
from medfm.cli_checks import check_paths as _check_paths
from medfm.cli_checks import label_fraction_option as _label_fraction_option
from medfm.cli_parser import build_parser


def _load_recipe(cls, path: Path, epochs: Optional[int], dataset: Optional[str] = None,
                 label_fraction: Optional[float] = None):
    """Load a pretrain/finetune recipe; its encoder/objective ``args`` are checked against the builders.

    Args:
        label_fraction: ``medfm finetune --label-fraction``, checked before (in (0, 1]:
            :func:`medfm.cli_checks.label_fraction_option`).

    Raises:
        ConfigError: unknown keys or arguments (with close matches), wrong types, bad values.
    """
    from medfm.config import check_call_args, from_dict, load_yaml, with_overrides
    from medfm.registry import ENCODERS, OBJECTIVES

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
            Malformed ``--probe-c`` and ``--label-fraction`` values, options this run would ignore,
            ``--protocol zeroshot`` without ``--data`` and one checkpoint, ``--data`` without one checkpoint or
            with another protocol than as-is, and with ``--data`` a missing local checkpoint, are refused before
            this runs (:func:`medfm.cli_checks.check_paths`).
    """
    args.split = args.split or "test"
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.protocol == "zeroshot":  # with --data and one checkpoint: check_paths refuses the rest
        from medfm.evaluation.zeroshot import zeroshot_eval

        res = zeroshot_eval(args.checkpoint[0], args.data, split=args.split, data_root=args.data_root,
                            output=args.output, batch_size=args.batch_size or 256, size=args.size)
        m, ch = res["metrics"], res["meta"]["chance"]
        print(f"{args.data} {args.split} zero-shot: ACC {_num(m['acc'])}  AUC {_num(m['auc'])}  (chance ACC "
              f"{ch['acc_uniform']:.4f}, majority class {ch['acc_majority']:.4f}, AUC {ch['auc']:.1f})")
        return
    if args.data is not None:  # one checkpoint, as-is: check_paths refuses the rest (cli_checks.DATA_USAGE)
        from medfm.evaluation.evaluate import evaluate_checkpoint

        res = evaluate_checkpoint(args.checkpoint[0], args.data, split=args.split, size=args.size,
                                  data_root=args.data_root, output=args.output, batch_size=args.batch_size or 256)
        m = res["metrics"]
        print(f"{args.data} {args.split}: ACC {_num(m['acc'])}  AUC {_num(m['auc'])}  balanced ACC "
              f"{_num(m['balanced_acc'])}")
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

        fraction = None if args.label_fraction is None else _label_fraction_option(args.label_fraction, single=True)[0]
        recipe = _load_recipe(FinetuneRecipe, args.recipe, args.epochs, args.dataset, fraction)
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

        # a full checkpoint or another folder given as the adapter: named by load_adapter, before peft loads
        print(f"merged checkpoint: {merge_adapter(args.adapter, args.output, args.base)}")
    elif args.command == "card":
        from medfm.cards import update_card

        print(f"model card: {update_card(args.checkpoint, args.results)}")
    elif args.command == "push":
        from medfm.hub_push import push_checkpoint

        url, uploaded, left_out = push_checkpoint(args.checkpoint, args.repo_id, private=args.private,
                                                  include=args.include)
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
    if not folders:  # nothing checked: a failure, said on stderr like the errors
        print(f"medfm: error: no data set folder with a SHA256SUMS, nor medmnist/, under "
              f"{resolve_data_root(args.data_root)}", file=sys.stderr)
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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a batch scheduler ending a job) raised in the ``medfm`` process,
    so that it unwinds as Ctrl-C does: temporary folders of atomic writes removed
    (:func:`medfm.io.atomic_dir`), a new run folder without a training state discarded."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in this process (Python's default is to die
    at once, which left ``.<name>.tmp-*`` folders behind); the previous handler is restored after.
    Left alone off the main thread or when someone else already handles SIGTERM. A process forked
    inside the block (a MedMNIST-C worker pool, which ``terminate()`` ends with SIGTERM) dies as before."""
    import os
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``medfm`` console script; returns the exit code.

    Errors medfm anticipates print one line ``medfm: error: ...`` and return 2.
    Ctrl-C prints ``medfm: interrupted`` (when a training state was saved, with a hint: ``continue with the same
    command and --resume (<output>)``; for ``eval``, which takes no ``--resume`` and continues a suite's fine-tuning
    runs by itself, ``continue with the same command (<output>)``) and returns 130, the shell's code for SIGINT;
    SIGTERM (:class:`Terminated`) prints ``medfm: terminated`` and returns 143 (128 + 15).

    A failed command leaves no ``--output`` folder it created without a training state, a logged step or a
    finished report (:func:`medfm.training.run_folder.discard_on_failure`, the runners' rule): for ``pretrain``,
    ``finetune``, ``segment``, ``vqa`` and ``fuse`` after any failure (an unexpected error's traceback included, as
    the runners do); for ``eval``, whose report folder is written whole, after the errors above and an interrupt
    only.
    """
    with _sigterm_unwinds():
        return _main(argv)


def _main(argv: Optional[List[str]]) -> int:
    """:func:`main` with SIGTERM raising :class:`Terminated`."""
    args = build_parser().parse_args(argv)  # before importing torch: --help and usage errors answer at once
    from medfm.config import ConfigError  # light imports: a bad path is answered before torch loads
    from medfm.data.errors import MedFMDataError
    from medfm.registry import UnknownNameError
    from medfm.training.run_folder import discard_on_failure  # torch-free: torch loads only when a folder is left

    # CheckpointError is a ValueError; OSError: unwritable/missing paths, a full disk, an output that exists
    answered = (ConfigError, MedFMDataError, UnknownNameError, OSError, ValueError)
    output = getattr(args, "output", None) if args.command in _OUTPUT_COMMANDS else None
    # a training run's folder: the runners' rule, whatever the failure; eval's report folder, written whole:
    # discarded only after the errors answered here and an interrupt (as before)
    discard_after = (*answered, KeyboardInterrupt) if args.command == "eval" else BaseException
    try:
        with discard_on_failure(output, discard_after):
            _check_paths(args)
            return _run(args)
    except answered as err:
        print(f"medfm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: one line, not a traceback from wherever torch was
        from medfm.training.state import STATE_JSON

        kept = output is not None and Path(output).is_dir() and any(Path(output).rglob(STATE_JSON))
        what, code = ("terminated", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
        # --resume only for a command that takes it: eval (a suite's fine-tuning runs) continues them by itself
        again = "the same command" + (" and --resume" if hasattr(args, "resume") else "")
        print(f"medfm: {what}" + (f"; continue with {again} ({output})" if kept else ""), file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
