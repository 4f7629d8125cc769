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
from typing import Any, Dict, Iterator, List, Optional, Tuple

from medfm.cli_parser import build_parser


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


def _suite_corrupts(suite: Optional[Dict[str, Any]]) -> bool:
    """Whether a suite file (its YAML mapping) corrupts any data set: it has a ``corruptions:``
    section (an empty one is no section: :class:`medfm.evaluation.suite_spec.Suite`) and a dataset
    without ``corruptions: false``. A malformed ``datasets`` counts as corrupting
    (:func:`medfm.evaluation.suite_spec.load_suite` names it)."""
    if not suite or suite.get("corruptions") is None:
        return False
    datasets = suite.get("datasets")
    if not isinstance(datasets, list):
        return True
    return any(not (isinstance(d, dict) and d.get("corruptions") is False) for d in datasets)


#: ``medfm eval`` options that apply in some runs only: option -> the cases it needs (each a key of
#: :data:`_EVAL_CASES`); given where one of them does not hold, the option is refused (not ignored)
_EVAL_OPTION_CASES = {"split": ("data",), "size": ("data",), "label_fraction": ("suite",), "probe_c": ("suite",),
                      "max_samples": ("suite",), "workers": ("suite", "corruptions"),
                      "cache_dir": ("suite", "corruptions")}
#: case -> (whether this run is one, given the arguments and the ``--suite`` file's mapping; why its
#: options are refused otherwise, ``{suite}`` the suite file's name)
_EVAL_CASES = {
    "data": (lambda args, suite: args.data is not None,
             "--data option(s); a suite sets split and size per dataset in its YAML"),
    "suite": (lambda args, suite: args.suite is not None,
              "--suite option(s); --data scores one checkpoint on one split"),
    "corruptions": (lambda args, suite: _suite_corrupts(suite),
                    "MedMNIST-C option(s) for building corrupted sets, and {suite} corrupts no data set "
                    "(no corruptions: section, or corruptions: false on every dataset)"),
}


def _check_eval_options(args: argparse.Namespace, suite: Optional[Dict[str, Any]] = None) -> None:
    """Refuse options that this ``eval`` run would ignore (they used to be dropped silently):
    :data:`_EVAL_OPTION_CASES`, e.g. ``--split`` with ``--suite``, ``--probe-c`` with ``--data``,
    ``--workers`` with a suite that corrupts nothing.

    Args:
        suite: the ``--suite`` file's YAML mapping (None with ``--data``).

    Raises:
        ValueError: one line naming the refused options of the first case that does not hold, and why.
    """
    refused: Dict[str, List[str]] = {}
    for option, cases in _EVAL_OPTION_CASES.items():
        if getattr(args, option) is not None:
            failed = next((c for c in cases if not _EVAL_CASES[c][0](args, suite)), None)
            if failed is not None:
                refused.setdefault(failed, []).append("--" + option.replace("_", "-"))
    if refused:
        case, names = next(iter(refused.items()))
        why = _EVAL_CASES[case][1].format(suite=args.suite.name if args.suite is not None else "")
        raise ValueError(f"{', '.join(names)}: {why}")


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
            Options this run would ignore, and with ``--data`` a missing local checkpoint, are refused
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

        # a full checkpoint or another folder given as the adapter: named by load_adapter, before peft loads
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


#: subcommands whose ``--output`` is a run folder (created by the run)
_OUTPUT_COMMANDS = ("pretrain", "finetune", "segment", "vqa", "fuse", "eval")
#: subcommand -> its arguments naming a checkpoint (or LoRA adapter) folder, positionals by name and
#: options by flag, each with what it must be: "any" a checkpoint or LoRA adapter, local or ``hf-hub:``;
#: "local" the same, but a local folder (``card`` rewrites its README.md); "adapter" a local LoRA
#: adapter folder; "full" a full checkpoint whose weights an encoder starts from (a LoRA adapter is
#: refused), local or ``hf-hub:`` (``--init``: or ``timm``)
_CHECKPOINT_ARGS = {"eval": (("checkpoint", "any"),), "merge": (("adapter", "adapter"), ("--base", "full")),
                    "card": (("checkpoint", "local"),), "push": (("checkpoint", "any"),),
                    "finetune": (("--init", "full"),), "segment": (("--init", "full"),), "vqa": (("--init", "full"),)}


def _check_checkpoint_paths(args: argparse.Namespace) -> None:
    """A checkpoint (or adapter) argument that names no checkpoint folder, named before torch is
    imported (2-25 s sooner) by the check the library runs too
    (:func:`medfm.checkpoint_ids.checkpoint_folder_problem`, in :func:`medfm.hub.load_config` and
    :func:`medfm.adapters.lora.load_adapter`): a missing path, a file, a folder without
    ``config.json`` (a run folder: naming its checkpoint subfolders), for ``merge``'s adapter a
    folder without ``adapter_config.json``, for ``--init`` and ``--base`` a LoRA adapter (merge it
    first), for ``card`` and ``merge`` a hub id (they work on local folders). An option's path is
    named with its flag (``--init: no checkpoint directory at ...``).

    ``hf-hub:`` ids of the other arguments pass (fetched later), as does ``--init timm`` (timm's own weights).

    Raises:
        ValueError: the first argument that names no such folder.
    """
    from medfm.checkpoint_ids import TIMM_WEIGHTS, checkpoint_folder_problem, is_hub_id

    for name, must_be in _CHECKPOINT_ARGS.get(args.command, ()):
        given = getattr(args, name.lstrip("-"))
        for ident in given if isinstance(given, list) else [given]:
            if ident is None or (name == "--init" and ident == TIMM_WEIGHTS) or (
                    is_hub_id(ident) and must_be in ("any", "full")):
                continue
            message = checkpoint_folder_problem(ident, adapter=must_be == "adapter", full=must_be == "full")
            if message:
                raise ValueError(f"{name}: {message}" if name.startswith("--") else message)


def _start_checkpoint_problem(ident: Any) -> Optional[str]:
    """What is wrong with ``ident`` as the checkpoint a recipe's encoder starts from (``encoder.pretrained``),
    or None: the rule of :func:`medfm.hub.check_local_checkpoint`
    (which imports torch): ``None``, ``"timm"`` and ``hf-hub:`` ids pass, anything else is
    :func:`medfm.checkpoint_ids.checkpoint_folder_problem` with ``full``."""
    from medfm.checkpoint_ids import TIMM_WEIGHTS, checkpoint_folder_problem, is_hub_id

    if ident is None or str(ident) == TIMM_WEIGHTS or is_hub_id(ident):
        return None
    return checkpoint_folder_problem(ident, full=True)


#: the ``medfm fuse`` fuser that takes no ``image_encoder`` (:func:`medfm.training.fusion.build_fuser` drops it)
_FUSER_WITHOUT_IMAGE_ENCODER = "channelvit"


def _recipe_start_checkpoints(command: str, recipe: Dict[str, Any]) -> Iterator[Tuple[str, Any]]:
    """``(recipe location, value)`` of each checkpoint that a recipe (its YAML mapping) names for an
    encoder to start from, in the order the runners load them, for :func:`_check_recipe_checkpoints`:
    ``encoder.pretrained`` (``pretrain``, ``finetune``, ``segment``, ``vqa``; located at the key,
    :func:`medfm.training.runs.check_init_checkpoint`); for ``fuse`` the shared ``image_encoder``'s
    ``args.pretrained``, then each model's own ``args.image_encoder`` (located at the section:
    :func:`medfm.training.fusion.build_models`). Sections that are not mappings are left to the runners."""
    def key(section: Any, *path: str) -> Any:  # section[path[0]][path[1]]..., None where one is not a mapping
        for name in path:
            section = section.get(name) if isinstance(section, dict) else None
        return section

    if command in ("pretrain", "finetune", "segment", "vqa"):
        yield "encoder.pretrained", key(recipe, "encoder", "pretrained")
    elif command == "fuse":
        yield "image_encoder", key(recipe, "image_encoder", "args", "pretrained")
        models = recipe.get("models")
        for label, spec in (models.items() if isinstance(models, dict) else ()):
            if isinstance(spec, dict) and spec.get("fuser", "3mat") != _FUSER_WITHOUT_IMAGE_ENCODER:
                yield f"models.{label}", key(spec, "args", "image_encoder", "args", "pretrained")


def _check_recipe_checkpoints(args: argparse.Namespace, recipe: Optional[Dict[str, Any]]) -> None:
    """A recipe's starting checkpoint (``encoder.pretrained``; ``medfm fuse``: ``image_encoder.args.pretrained``,
    a model's own) that is missing, a file, a folder without ``config.json`` or a LoRA adapter, named
    before torch is imported (4 s sooner) in the runners' words: ``r.yaml.encoder.pretrained: no
    checkpoint directory at '/nonexistent/ckpt' ...`` (:func:`medfm.config.located_error`, the file's
    name as :func:`medfm.config.from_dict` is given it), ``r.yaml.models.late: ...``. A given ``--init``
    replaces ``encoder.pretrained``, which is then not checked (:func:`_check_checkpoint_paths` checks it).

    Raises:
        ConfigError: the first such checkpoint (:func:`_start_checkpoint_problem`).
    """
    from medfm.config import ConfigError, located_error

    if recipe is None or getattr(args, "init", None):
        return
    for where, ident in _recipe_start_checkpoints(args.command, recipe):
        if isinstance(ident, str):  # another type is named by the recipe reader
            message = _start_checkpoint_problem(ident)
            if message:
                raise located_error(ConfigError(message), f"{Path(args.recipe).name}.{where}") from None


def _check_input_file(path: Path, flag: str, what: str, name: str) -> None:
    """Refuse a missing path, or a folder, where the file ``what`` (usually called ``name``) is
    expected (named before the imports).

    Raises:
        ValueError: ``path`` does not exist or is a directory (the message names ``flag`` and
            ``path``, and ``<path>/<name>`` when the folder holds that file).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        inside = path / name
        raise ValueError(f"{flag} {path} is a directory; pass "
                         + (str(inside) if inside.is_file() else f"{what} (a file)"))
    if not path.exists():
        raise ValueError(f"{flag} {path} does not exist; pass {what}")


def _check_medmnist_flag(flag: Optional[str], option: str) -> None:
    """Refuse an unknown MedMNIST data set (flag) given as ``option`` before torch is imported (it used to be
    named after the imports and the checkpoint load: ``medfm eval --data`` took 20 s to say so).

    Raises:
        UnknownDatasetError: ``flag`` is not a MedMNIST flag (with close matches), in a recipe's words
            (``"--data: unknown MedMNIST data set 'pneumonimnist'; did you mean 'pneumoniamnist' ..."``,
            :class:`medfm.training.recipes.DataConfig`).
    """
    from medfm.data.medmnist_info import check_dataset_name

    if flag is not None:
        check_dataset_name(flag, option)


def _check_recipe_dataset(recipe: Dict[str, Any], path: str) -> None:
    """A pretrain/finetune recipe's ``data.dataset`` that names no MedMNIST set nor the corpus, refused
    before torch is imported (4 s sooner), in the words :func:`medfm.config.from_dict` gives
    :class:`medfm.training.recipes.DataConfig`'s refusal (``"r.yaml: data.dataset: unknown ..."``).
    Anything else wrong with the section (not a mapping, not a string) is left to that check.

    Raises:
        ConfigError: the unknown name, with close matches (:func:`medfm.data.medmnist_info.check_dataset_name`).
    """
    from medfm.config import ConfigError
    from medfm.data.errors import UnknownDatasetError
    from medfm.data.medmnist_info import check_dataset_name

    data = recipe.get("data")
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        try:
            check_dataset_name(data["dataset"], "data.dataset", corpus=True)
        except UnknownDatasetError as err:
            raise ConfigError(f"{Path(path).name}: {err}") from None


def _check_paths(args: argparse.Namespace) -> None:
    """Arguments checked before anything is loaded or written, and before torch is imported
    (the imports take seconds: a mistyped recipe, checkpoint, results file or data set is named
    before them).

    Raises:
        ValueError: ``--data-root`` is not a directory (the CLI never downloads into it), or
            ``--output`` is an existing file; ``eval`` options that run would ignore (of the other
            mode, or MedMNIST-C options for a suite without corruptions: :func:`_check_eval_options`);
            a checkpoint argument that names no checkpoint folder,
            ``--init`` and ``--base`` included (:func:`_check_checkpoint_paths`); a ``card --results``
            that is missing or a folder (:func:`_check_input_file`).
        ConfigError: a recipe (or ``--suite``) file that is missing, a folder or not a YAML mapping
            (:func:`medfm.config.load_yaml`, naming it a recipe or a suite); a recipe's starting checkpoint
            (``encoder.pretrained``, ...) that names no full checkpoint folder, with its recipe location
            (:func:`_check_recipe_checkpoints`).
        UnknownDatasetError: an unknown MedMNIST data set for ``eval --data`` or ``finetune --dataset``
            (and as a ConfigError, a pretrain/finetune recipe's ``data.dataset``: :func:`_check_recipe_dataset`).
        FileExistsError: ``merge`` into a non-empty folder (:func:`_check_new_output`).
    """
    from medfm.config import load_yaml

    loaded: Dict[str, Dict[str, Any]] = {}
    for yaml_file, kind in ((getattr(args, "recipe", None), "recipe"), (getattr(args, "suite", None), "suite")):
        if yaml_file is not None:
            # missing, a folder, not YAML: one line now rather than after the imports
            data = loaded[kind] = load_yaml(yaml_file, kind)
            if args.command in ("pretrain", "finetune") and getattr(args, "dataset", None) is None:
                _check_recipe_dataset(data, yaml_file)
    root = getattr(args, "data_root", None)
    if root and not Path(root).expanduser().is_dir():
        what = "is a file" if Path(root).expanduser().exists() else "does not exist"
        raise ValueError(f"--data-root {root} {what}; it is the folder that holds the data set folders "
                         "(medmnist/, chase_db1/, ...)")
    output = getattr(args, "output", None)
    if args.command in _OUTPUT_COMMANDS and output is not None and Path(output).is_file():
        raise ValueError(f"--output {output} is a file; the run writes a folder there: choose another path")
    if args.command == "eval":
        _check_eval_options(args, loaded.get("suite"))
        _check_medmnist_flag(args.data, "--data")
    if args.command == "finetune":
        _check_medmnist_flag(args.dataset, "--dataset")
    if args.command == "merge":
        _check_new_output(args.output)
    _check_checkpoint_paths(args)  # after the checks above, which name the other mistakes first
    _check_recipe_checkpoints(args, loaded.get("recipe"))
    if args.command == "card":  # after the checkpoint it is for
        _check_input_file(args.results, "--results", "the results.json that medfm eval (or the training run) wrote",
                          "results.json")


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

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
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

    Errors medfm anticipates print one line ``medfm: error: ...`` and return 2; a run folder
    (``--output``) that this command created is then removed unless it holds a training state.
    Ctrl-C prints ``medfm: interrupted`` (with a ``--resume`` hint when a training state was
    saved) and returns 130, the shell's code for SIGINT, with the same clean-up; SIGTERM
    (:class:`Terminated`) prints ``medfm: terminated`` and returns 143 (128 + 15), after the same clean-up.
    """
    with _sigterm_unwinds():
        return _main(argv)


def _main(argv: Optional[List[str]]) -> int:
    """:func:`main` with SIGTERM raising :class:`Terminated`."""
    args = build_parser().parse_args(argv)  # before importing torch: --help and usage errors answer at once
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
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: one line, not a traceback from wherever torch was
        _discard_failed_output(new_output)
        from medfm.training.state import STATE_JSON

        kept = output is not None and Path(output).is_dir() and any(Path(output).rglob(STATE_JSON))
        what, code = ("terminated", 143) if isinstance(stop, Terminated) else ("interrupted", 130)
        print(f"medfm: {what}" + (f"; continue with the same command and --resume ({output})" if kept else ""),
              file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
