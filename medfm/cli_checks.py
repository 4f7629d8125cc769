"""The ``medfm`` command's checks of its arguments, made before anything is loaded or written and
before torch is imported (the imports take seconds): recipe and suite files, data set names, the
output folder, the checkpoint paths (:func:`medfm.checkpoint_ids.checkpoint_folder_problem`), a
recipe's starting checkpoints and local text model folder, the ``eval`` options a run would
ignore, ``bench --encoder``; then a suite file's ``finetune:`` settings. :func:`check_paths` runs
them all; :mod:`medfm.cli` calls it first.

When several mistakes are typed, the first found is named, always in this order (a file is read
before the options that override it, as the runs read it; the paths of checkpoints last, as the runs
load them after reading their settings):

1. the YAML files named: the recipe, then ``eval``'s suite, each one read (missing, a folder, not a
   mapping), then what of it is checked here: a ``pretrain``/``finetune`` recipe's ``data.dataset``
   (unless ``--dataset`` replaces it), then its ``data.label_fraction`` (unless ``--label-fraction`` replaces
   it; :func:`medfm.arg_checks.check_label_fraction`), a suite's ``protocol`` section
   (:func:`medfm.suite_protocols.check_protocol_section`, which the suite reader runs first too);
2. ``--data-root``, then ``--output``;
3. the command's own options: ``eval``: ``--data``'s data set, malformed ``--probe-c`` then
   ``--label-fraction``, the usage rules, the options the run would ignore (:func:`_check_eval_options`);
   ``finetune``: ``--dataset``, then ``--label-fraction`` (:func:`label_fraction_option`); ``merge``: its
   output folder; ``bench``: ``--encoder`` (:func:`_check_bench_encoder`);
4. the checkpoint arguments (``--init`` and ``--base`` included), then a recipe's starting checkpoints,
   then its local text model folder; ``card``: then ``--results``;
5. ``eval``: the suite file's ``finetune:`` protocol settings, then whether its protocol uses them
   (:func:`medfm.suite_protocols.check_protocol_section` with ``settings``: the suite reader's rule and words,
   :func:`medfm.suite_protocols.check_finetune_settings`, torch-free too). Last, where they were while their
   check imported torch (the fine-tuning recipe's section classes did, 3-6 s): the order of the mistakes named
   is kept. (They were left to the suite reader, after the run's imports.)

The runs' own (later) checks may name another mistake first where these do not check everything a run
does (e.g. a suite's ``metrics`` section, read by the suite reader after its ``protocol`` section).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple


def _check_new_output(path: Path) -> None:
    """Refuse to write a checkpoint over an existing non-empty directory or file.

    Raises:
        FileExistsError: ``path`` is a file or a non-empty directory (saving would replace it whole).
    """
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not empty; choose another output or delete it first")


def _check_output_folder(command: str, output: str) -> None:
    """Refuse an ``--output`` that is a file or lies under one, by the library's own check
    (:func:`medfm.io.refuse_file_in_the_way`, torch-free) with the advice of the command's folder: a training
    run's (:data:`medfm.io.RUN_FOLDER_ADVICE`, as :func:`medfm.training.loop.check_output_folder`) or, for ``eval``,
    a report folder's (:data:`medfm.io.REPORT_FOLDER_ADVICE`, as :func:`medfm.evaluation.report.check_output_dir`);
    with the flag in front as the other options' errors: ``--output: cannot write 'f/run': 'f' is a file, not a
    folder; a run writes its files in a folder there: choose another output``.

    Raises:
        NotADirectoryError: ``output`` or one of its parents is a file (the topmost named). (Was a ValueError in
            words of its own for ``output`` itself, and a file above it was named only by the run, after torch's
            imports; ``eval`` was given the training runs' advice.)
    """
    from medfm.io import REPORT_FOLDER_ADVICE, RUN_FOLDER_ADVICE, refuse_file_in_the_way

    try:
        refuse_file_in_the_way(output, REPORT_FOLDER_ADVICE if command == "eval" else RUN_FOLDER_ADVICE)
    except NotADirectoryError as err:
        raise NotADirectoryError(f"--output: {err}") from None


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


#: ``medfm eval`` options that apply in one mode only, and of the ``--suite`` ones those that build corrupted sets
_DATA_ONLY = ("split", "size")
_SUITE_ONLY = ("label_fraction", "probe_c", "max_samples", "workers", "cache_dir")
_CORRUPTION_ONLY = ("workers", "cache_dir")


def _refuse_options(args: argparse.Namespace, options: Tuple[str, ...], why: str) -> None:
    """Refuse those of ``options`` that were given (not None).

    Raises:
        ValueError: ``"--opt, --opt2: <why>"``.
    """
    given = ["--" + o.replace("_", "-") for o in options if getattr(args, o) is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: {why}")


#: ``medfm eval --protocol zeroshot`` with ``--suite``, or with another number of checkpoints than one
ZEROSHOT_USAGE = "--protocol zeroshot scores exactly one image-text checkpoint on --data <MedMNIST flag>"
#: ``medfm eval --data`` with another number of checkpoints than one, or with a suite protocol other than as-is
DATA_USAGE = "--data evaluates exactly one classifier checkpoint as it is (use --suite for more)"


def _check_eval_options(args: argparse.Namespace, suite: Optional[Dict[str, Any]] = None,
                        suite_protocol: Optional[str] = None) -> None:
    """Refuse, before the imports and in this order (the first mistake found is named):

    1. a malformed value: ``--probe-c`` (:func:`medfm.suite_protocols.parse_probe_c`), ``--label-fraction``
       (:func:`medfm.suite_protocols.parse_label_fractions`); each was called ignored by a run whose protocol
       does not use it, or named after 5 s of imports (an unknown ``--data`` set, a malformed value too, is
       named before this runs: :func:`check_paths`);
    2. a usage rule: ``--protocol zeroshot`` other than with ``--data`` and one checkpoint
       (:data:`ZEROSHOT_USAGE`), ``--data`` with other than one checkpoint or with a suite protocol other than
       ``as-is`` (:data:`DATA_USAGE`); each was refused after 2 s of imports;
    3. options that this ``eval`` run would ignore (they used to be dropped silently): the ``--suite``
       options with ``--data``, ``--split`` and ``--size`` with ``--suite``, ``--workers`` and ``--cache-dir``
       with a suite that corrupts nothing (:func:`_suite_corrupts`), ``--label-fraction`` or ``--probe-c``
       that the run's protocol does not use (:func:`medfm.suite_protocols.check_protocol_overrides`, the
       check of :func:`medfm.evaluation.suite_spec.suite_overrides`, 5-8 s sooner).

    Args:
        suite: the ``--suite`` file's YAML mapping (None with ``--data``).
        suite_protocol: its ``protocol`` section's protocol, as read and checked by
            :func:`medfm.suite_protocols.check_protocol_section` (:func:`check_paths`); ``--protocol`` replaces it.

    Raises:
        ValueError: one line naming the malformed value (``"--probe-c: probe C must be a positive number or 'val',
            got 'abc'"``, ``"--label-fraction: label fraction 'abc' in 'abc' is not a number; give a comma list such
            as 0.01,0.1,1"``), the usage mistake, or the refused options and why.
    """
    from medfm.suite_protocols import check_protocol_overrides, parse_probe_c

    if args.probe_c is not None:
        try:
            parse_probe_c(args.probe_c, "probe C")
        except ValueError as err:  # "--flag: ...", as every message naming an option
            raise ValueError(f"--probe-c: {err}") from None
    if args.label_fraction is not None:
        label_fraction_option(args.label_fraction)
    if args.protocol == "zeroshot" and (args.data is None or len(args.checkpoint) != 1):
        raise ValueError(ZEROSHOT_USAGE)
    if args.data is not None:
        if len(args.checkpoint) != 1 or args.protocol not in (None, "as-is", "zeroshot"):
            raise ValueError(DATA_USAGE)
        _refuse_options(args, _SUITE_ONLY, "--suite option(s); --data scores one checkpoint on one split")
    if args.suite is not None:
        _refuse_options(args, _DATA_ONLY, "--data option(s); a suite sets split and size per dataset in its YAML")
        if not _suite_corrupts(suite):
            _refuse_options(args, _CORRUPTION_ONLY,
                            f"MedMNIST-C option(s) for building corrupted sets, and {args.suite.name} corrupts no "
                            "data set (no corruptions: section, or corruptions: false on every dataset)")
        check_protocol_overrides(args.protocol or suite_protocol, label_fractions=args.label_fraction,
                                 probe_c=args.probe_c)


def label_fraction_option(text: str, single: bool = False) -> Tuple[float, ...]:
    """``--label-fraction``'s value: ``medfm eval``'s comma list, ``medfm finetune``'s one fraction (``single``),
    by the one rule of label fractions (:func:`medfm.suite_protocols.parse_label_fractions`, which reads a suite
    file's too), so that the same mistake gets the same line from both commands.

    Returns:
        the fractions, each in (0, 1] (with ``single``: one).

    Raises:
        ValueError: ``"--label-fraction: label fractions must be in (0, 1], got [1.5]"``, ``"--label-fraction: label
            fraction 'abc' in 'abc' is not a number; give a comma list such as 0.01,0.1,1"`` (``single``: ``give one
            fraction such as 0.1``), with ``single`` ``"--label-fraction: '0.1,0.5' holds 2 label fractions; ..."``.
    """
    from medfm.suite_protocols import parse_label_fractions

    try:
        return parse_label_fractions(text, "label fractions", single=single)
    except ValueError as err:
        raise ValueError(f"--label-fraction: {err}") from None


#: every registered encoder and its image dimensions (its ``dims`` tag, 2 when untagged), for ``medfm bench
#: --encoder`` checked before torch is imported (the encoders register when their modules are imported, with
#: torch: 4-6 s). A copy of :data:`medfm.registry.ENCODERS` that cannot drift unnoticed:
#: tests/test_cli_early_followups.py compares it with the registry.
ENCODER_DIMS = {"convnext_atto": 2, "convnext_test": 2, "groupmamba_test": 2, "groupmamba_tiny": 2, "kan_resnet18": 2,
                "kan_resnet_test": 2, "medvit_kan_small": 2, "medvit_kan_test": 2, "medvit_kan_tiny": 2, "resnet18": 2,
                "resnet3d_10": 3, "resnet3d_18": 3, "resnet3d_test": 3, "resnet50": 2, "resnet_test": 2,
                "vit_small": 2, "vit_test": 2, "vit_tiny": 2, "vmamba_test": 2, "vmamba_tiny": 2}


def _check_bench_encoder(name: str) -> None:
    """``medfm bench --encoder`` that names no 2D encoder, named before torch is imported (it was, after 4-6 s):
    an unregistered name in the registry's words and with its close matches (:meth:`medfm.registry.Registry.get`
    of a registry holding :data:`ENCODER_DIMS`' names), a 3D encoder in
    :func:`medfm.benchmark.require_2d_encoders`' words: the rule of both, :func:`medfm.registry.require_2d_encoder`;
    the flag put first.

    Raises:
        UnknownNameError: ``"--encoder: unknown encoder 'resnet1'; did you mean 'resnet18' or 'resnet50' or
            'resnet3d_18'? (known: 20; medfm.list_encoders() lists them)"``.
        ValueError: ``"--encoder: 'resnet3d_18' is a 3D encoder; these benchmarks time 2D encoders on (B, C, H, W)
            images"``.
    """
    from medfm.registry import ENCODERS, Registry, UnknownNameError, require_2d_encoder

    names = Registry(ENCODERS.kind, lister=ENCODERS.lister)  # no modules: nothing imported
    for encoder, dims in ENCODER_DIMS.items():
        names.register(encoder, dims=dims)(object)  # a name and its tags: nothing is built
    try:
        require_2d_encoder(name, names)
    except UnknownNameError as err:
        raise UnknownNameError(f"--encoder: {err}") from None
    except ValueError as err:  # a 3D encoder
        raise ValueError(f"--encoder: {err}") from None


#: subcommands whose ``--output`` is a folder the command creates: a training run's, or ``eval``'s report folder
OUTPUT_COMMANDS = ("pretrain", "finetune", "segment", "vqa", "fuse", "eval")
#: subcommand -> its arguments naming a checkpoint (or LoRA adapter) folder, positionals by name and
#: options by flag, each with what it must be: "any" a checkpoint or LoRA adapter, local or ``hf-hub:``;
#: "local" the same, but a local folder (``card`` rewrites its README.md); "adapter" a local LoRA
#: adapter folder; "full" a full checkpoint whose weights an encoder starts from (a LoRA adapter is
#: refused), local or ``hf-hub:`` (``--init``: or ``timm``)
CHECKPOINT_ARGS = {"eval": (("checkpoint", "any"),), "merge": (("adapter", "adapter"), ("--base", "full")),
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

    for name, must_be in CHECKPOINT_ARGS.get(args.command, ()):
        given = getattr(args, name.lstrip("-"))
        for ident in given if isinstance(given, list) else [given]:
            if ident is None or (name == "--init" and ident == TIMM_WEIGHTS) or (
                    is_hub_id(ident) and must_be in ("any", "full")):
                continue
            message = checkpoint_folder_problem(ident, adapter=must_be == "adapter", full=must_be == "full")
            if message:
                raise ValueError(f"{name}: {message}" if name.startswith("--") else message)


#: the ``medfm fuse`` fuser that takes no ``image_encoder`` (:func:`medfm.training.fusion.build_fuser` refuses one:
#: its own message, not a checkpoint path check, names that mistake)
_FUSER_WITHOUT_IMAGE_ENCODER = "channelvit"


def _key(section: Any, *path: str) -> Any:
    """``section[path[0]][path[1]]...`` of a recipe's YAML mapping, None where one level is not a mapping."""
    for name in path:
        section = section.get(name) if isinstance(section, dict) else None
    return section


def _recipe_start_checkpoints(command: str, recipe: Dict[str, Any]) -> Iterator[Tuple[str, Any]]:
    """``(recipe location, value)`` of each checkpoint that a recipe (its YAML mapping) names for an
    encoder to start from, in the order the runners load them, for :func:`_check_recipe_checkpoints`:
    ``encoder.pretrained`` (``pretrain``, ``finetune``, ``segment``, ``vqa``; located at the key,
    :func:`medfm.training.runs.check_init_checkpoint`); for ``fuse`` the shared ``image_encoder``'s
    ``args.pretrained``, then each model's own ``args.image_encoder`` (located at the section:
    :func:`medfm.training.fusion.build_models`). Sections that are not mappings are left to the runners."""
    if command in ("pretrain", "finetune", "segment", "vqa"):
        yield "encoder.pretrained", _key(recipe, "encoder", "pretrained")
    elif command == "fuse":
        yield "image_encoder", _key(recipe, "image_encoder", "args", "pretrained")
        models = recipe.get("models")
        for label, spec in (models.items() if isinstance(models, dict) else ()):
            if isinstance(spec, dict) and spec.get("fuser", "3mat") != _FUSER_WITHOUT_IMAGE_ENCODER:
                yield f"models.{label}", _key(spec, "args", "image_encoder", "args", "pretrained")


def _check_recipe_checkpoints(args: argparse.Namespace, recipe: Optional[Dict[str, Any]]) -> None:
    """A recipe's starting checkpoint (``encoder.pretrained``; ``medfm fuse``: ``image_encoder.args.pretrained``,
    a model's own) that is missing, a file, a folder without ``config.json`` or a LoRA adapter, named
    before torch is imported (4 s sooner) in the runners' words: ``r.yaml.encoder.pretrained: no
    checkpoint directory at '/nonexistent/ckpt' ...`` (:func:`medfm.config.located_error`, the file's
    name as :func:`medfm.config.from_dict` is given it), ``r.yaml.models.late: ...``. A given ``--init``
    replaces ``encoder.pretrained``, which is then not checked (:func:`_check_checkpoint_paths` checks it).

    Raises:
        ConfigError: the first such checkpoint (:func:`medfm.checkpoint_ids.start_checkpoint_problem`, the rule
            of :func:`medfm.hub.check_local_checkpoint`).
    """
    from medfm.checkpoint_ids import start_checkpoint_problem
    from medfm.config import ConfigError, located_error

    if recipe is None or getattr(args, "init", None):
        return
    for where, ident in _recipe_start_checkpoints(args.command, recipe):
        if isinstance(ident, str):  # another type is named by the recipe reader
            message = start_checkpoint_problem(ident)
            if message:
                raise located_error(ConfigError(message), f"{Path(args.recipe).name}.{where}") from None


#: the ``name`` of the text encoder spec that loads a model by ``model_name_or_path`` (:func:`medfm.text.encoders.hf`)
_HF_TEXT_ENCODER = "hf"


def _recipe_text_model(command: str, recipe: Dict[str, Any]) -> Optional[Tuple[str, Any]]:
    """``(recipe location, spec)`` of the text encoder a recipe (its YAML mapping) loads, located as its
    runner names it, or None: ``text_encoder`` of a ``vqa`` recipe and of a text-conditioned ``segment``
    recipe (one with ``tasks:``, :func:`medfm.training.segmentation.segment_from_recipe`;
    :func:`medfm.training.runs.build_recipe_text_encoder`); ``objective.args.text_encoder`` of a ``pretrain``
    recipe whose objective is ``clip``, at ``objective.args`` (:func:`medfm.training.runs.check_recipe_args`)."""
    if command == "vqa" or (command == "segment" and "tasks" in recipe):
        return "text_encoder", recipe.get("text_encoder")
    if command == "pretrain" and _key(recipe, "objective", "name") == "clip":
        return "objective.args", _key(recipe, "objective", "args", "text_encoder")
    return None


def _check_recipe_text_model(args: argparse.Namespace, recipe: Optional[Dict[str, Any]]) -> None:
    """A recipe's text model folder (``text_encoder: {name: hf, model_name_or_path: DIR}``; ``medfm pretrain``
    with ``clip``: ``objective.args.text_encoder``) that is missing or holds no ``config.json``, named before
    torch is imported (4-10 s sooner) in the runners' words: ``r.yaml.text_encoder: no text model directory at
    '/nonexistent/model'`` (``r.yaml.objective.args: ...`` for ``clip``). A name that may be a hub id
    (``org/name``) passes (looked up in the Hugging Face cache or fetched by the run), and so does any other
    spec (the default ``minilm``, a malformed one: :func:`medfm.text.encoders.check_text_encoder_spec` names it).

    Raises:
        ConfigError: :func:`medfm.checkpoint_ids.local_text_model_problem`, the rule of
            :func:`medfm.text.model_files.resolve_text_model`, with the recipe location.
    """
    from medfm.checkpoint_ids import local_text_model_problem
    from medfm.config import ConfigError, located_error

    found = _recipe_text_model(args.command, recipe) if recipe is not None else None
    spec = found[1] if found else None
    if not (isinstance(spec, dict) and spec.get("name") == _HF_TEXT_ENCODER):
        return
    ident = spec.get("model_name_or_path")
    if isinstance(ident, str) and ident.strip():  # another value is named by check_text_encoder_spec
        message = local_text_model_problem(ident)
        if message:
            raise located_error(ConfigError(message), f"{Path(args.recipe).name}.{found[0]}") from None


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


def _check_recipe_dataset(recipe: Dict[str, Any], path: str, command: str) -> None:
    """A recipe's ``data.dataset`` that names no MedMNIST set (``pretrain``: nor the corpus), refused before torch
    is imported (4 s sooner), with the recipe file's name put first as :func:`medfm.config.from_dict` does
    (``"r.yaml: data.dataset: unknown ..."``). A ``finetune`` recipe's misspelt name is called an unknown MedMNIST
    data set (the corpus is no name it takes), and the corpus itself is refused in
    :class:`medfm.training.recipes.FinetuneRecipe`'s words (it was, after the imports): the recipes' rule,
    :func:`medfm.data.medmnist_info.check_recipe_dataset`. Anything else wrong with the section (not a mapping, not a
    string) is left to :class:`medfm.training.recipes.DataConfig`.

    Args:
        command: ``pretrain`` or ``finetune``.

    Raises:
        ConfigError: the unknown name, with close matches; ``finetune``: the corpus
            (:data:`medfm.data.medmnist_info.CORPUS_NOT_FOR_FINETUNING`).
    """
    from medfm.config import ConfigError
    from medfm.data.medmnist_info import check_recipe_dataset

    data = recipe.get("data")
    if not (isinstance(data, dict) and isinstance(data.get("dataset"), str)):
        return
    try:
        check_recipe_dataset(data["dataset"], "data.dataset", finetuning=command == "finetune")
    except ValueError as err:  # UnknownDatasetError is one
        raise ConfigError(f"{Path(path).name}: {err}") from None


def _check_recipe_label_fraction(recipe: Dict[str, Any], path: str) -> None:
    """A ``pretrain``/``finetune`` recipe's ``data.label_fraction`` out of (0, 1], refused before torch is imported
    (it was named after 5 s of imports), by the rule and in the words of ``--label-fraction`` and of the recipe
    reader (:func:`medfm.arg_checks.check_label_fraction`), the recipe file's name put first as
    :func:`medfm.config.from_dict` does (``"r.yaml: data.label_fraction must be in (0, 1], got 1.5"``). A value that
    is no number (``'0.5'``, ``true``) is left to the recipe reader's type check (``"r.yaml.data.label_fraction
    must be a number, ..."``), which comes first there.

    Raises:
        ConfigError: the value out of (0, 1] (NaN too).
    """
    from medfm.config import ConfigError
    from medfm.arg_checks import check_label_fraction

    data = recipe.get("data")
    value = data.get("label_fraction") if isinstance(data, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    try:
        check_label_fraction(value, "data.label_fraction")
    except ValueError as err:
        raise ConfigError(f"{Path(path).name}: {err}") from None


def check_paths(args: argparse.Namespace) -> None:
    """Arguments checked before anything is loaded or written, and before torch is imported
    (the imports take seconds: a mistyped recipe, checkpoint, results file or data set is named
    before them); last, a suite's ``finetune:`` settings (torch-free too).

    Raises:
        ValueError: ``--data-root`` is not a directory (the CLI never downloads into it); a malformed
            ``eval --probe-c`` or ``--label-fraction`` (``finetune``: not one fraction in (0, 1]:
            :func:`label_fraction_option`), a 3D ``bench --encoder``,
            ``--protocol zeroshot`` without ``--data`` and one checkpoint, ``--data`` without one checkpoint
            or with another protocol than as-is, ``eval`` options that run would ignore (of the other
            mode, MedMNIST-C options for a suite without corruptions, protocol options its protocol
            does not use: :func:`_check_eval_options`);
            a checkpoint argument that names no checkpoint folder,
            ``--init`` and ``--base`` included (:func:`_check_checkpoint_paths`); a ``card --results``
            that is missing or a folder (:func:`_check_input_file`).
        ConfigError: a recipe (or ``--suite``) file that is missing, a folder or not a YAML mapping
            (:func:`medfm.config.load_yaml`, naming it a recipe or a suite); a suite's ``protocol`` section with
            a mistake, a bad ``finetune:`` setting included, that last
            (:func:`medfm.suite_protocols.check_protocol_section`, the suite reader's rule); a recipe's starting
            checkpoint
            (``encoder.pretrained``, ...) that names no full checkpoint folder, with its recipe location
            (:func:`_check_recipe_checkpoints`); a recipe's text model folder that is missing or holds no
            ``config.json`` (:func:`_check_recipe_text_model`).
        UnknownDatasetError: an unknown MedMNIST data set for ``eval --data`` or ``finetune --dataset``
            (and as a ConfigError, a pretrain/finetune recipe's ``data.dataset``, a finetune recipe's corpus:
            :func:`_check_recipe_dataset`; a ConfigError too: its ``data.label_fraction`` out of (0, 1],
            :func:`_check_recipe_label_fraction`); ``finetune --dataset corpus`` is a ValueError in the recipe's words
            (:data:`medfm.data.medmnist_info.CORPUS_NOT_FOR_FINETUNING`).
        UnknownNameError: an unregistered ``bench --encoder`` (:func:`_check_bench_encoder`).
        NotADirectoryError: ``--output`` is a file or lies under one (:func:`_check_output_folder`).
        FileExistsError: ``merge`` into a non-empty folder (:func:`_check_new_output`).

    The first mistake found is named, in the order of this module's docstring.
    """
    from medfm.config import load_yaml
    from medfm.data.medmnist_info import check_recipe_dataset
    from medfm.suite_protocols import check_protocol_section

    loaded: Dict[str, Dict[str, Any]] = {}
    suite_protocol = None
    for yaml_file, kind in ((getattr(args, "recipe", None), "recipe"), (getattr(args, "suite", None), "suite")):
        if yaml_file is not None:
            # missing, a folder, not YAML: one line now rather than after the imports
            data = loaded[kind] = load_yaml(yaml_file, kind)
            if args.command in ("pretrain", "finetune") and getattr(args, "dataset", None) is None:
                _check_recipe_dataset(data, yaml_file, args.command)
            if args.command in ("pretrain", "finetune") and getattr(args, "label_fraction", None) is None:
                _check_recipe_label_fraction(data, yaml_file)  # after data.dataset, as the recipe reader
            if kind == "suite":  # as the suite reader reads it first (load_suite)
                suite_protocol = check_protocol_section(data.get("protocol"), Path(yaml_file).name).name
    root = getattr(args, "data_root", None)
    if root and not Path(root).expanduser().is_dir():
        what = "is a file" if Path(root).expanduser().exists() else "does not exist"
        raise ValueError(f"--data-root {root} {what}; it is the folder that holds the data set folders "
                         "(medmnist/, chase_db1/, ...)")
    output = getattr(args, "output", None)
    if args.command in OUTPUT_COMMANDS and output is not None:
        _check_output_folder(args.command, output)
    if args.command == "eval":  # an unknown data set first: a malformed value, as those _check_eval_options names first
        _check_medmnist_flag(args.data, "--data")
        _check_eval_options(args, loaded.get("suite"), suite_protocol)
    if args.command == "finetune":
        if args.dataset is not None:  # the recipe's rule: the corpus named as such, not as an unknown set
            check_recipe_dataset(args.dataset, "--dataset", finetuning=True)
        if args.label_fraction is not None:
            label_fraction_option(args.label_fraction, single=True)
    if args.command == "merge":
        _check_new_output(args.output)
    if args.command == "bench":
        _check_bench_encoder(args.encoder)
    _check_checkpoint_paths(args)  # after the checks above, which name the other mistakes first
    _check_recipe_checkpoints(args, loaded.get("recipe"))
    _check_recipe_text_model(args, loaded.get("recipe"))  # after the encoder's checkpoint, as the runners
    if args.command == "card":  # after the checkpoint it is for
        _check_input_file(args.results, "--results", "the results.json that medfm eval (or the training run) wrote",
                          "results.json")
    if "suite" in loaded:  # its finetune: settings, last (where they were while their check imported torch)
        check_protocol_section(loaded["suite"].get("protocol"), Path(args.suite).name, settings=True)


__all__ = ["OUTPUT_COMMANDS", "CHECKPOINT_ARGS", "ZEROSHOT_USAGE", "DATA_USAGE", "ENCODER_DIMS",
           "label_fraction_option",
           "check_paths"]
