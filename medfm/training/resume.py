"""``--resume`` with the recipe the run was started with: one check shared by every runner.

A resumed run promises the result of an uninterrupted one (:mod:`medfm.training.loop`), which
only holds when it continues with the same settings. Every runner (``pretrain``, ``finetune``,
``segment`` (single and text-conditioned), ``vqa``, ``fuse``) calls :func:`check_resume_recipe`
right after :func:`medfm.training.loop.refuse_existing_run`, before it writes anything, so a
refused resume leaves the run folder (``config.yaml`` included) byte for byte as it was.
(Before this check a changed recipe silently replaced ``config.yaml`` and the saved state was
loaded into a run with other settings, or failed deep in the state loading.)

``--init`` (``finetune``, ``segment``, ``vqa``) is not part of the recipe: those runners record
it in ``<output>/init.json`` (:func:`record_init`, written with ``config.yaml``) and call
:func:`check_resume_init` next to :func:`check_resume_recipe`. (Before, a resume with another
``--init``, or none, continued from the saved weights but recorded the new one as the LoRA
adapter's base, or saved the model's fresh random weights as ``<output>/base``: an adapter that
reloads onto weights it was never trained on.)
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from medfm.config import ConfigError, dump_yaml, load_yaml, parse_recipe_yaml, to_dict
from medfm.training.state import STATE_JSON

log = logging.getLogger(__name__)

#: Recipe keys (dotted paths; ``[*]`` stands for any list position) that may differ on resume,
#: because they do not change what is trained or the reported scores:
#:
#: * ``train.num_threads``: CPU threads, i.e. speed only. (As on other hardware, a different
#:   thread count may change float reductions in the last bits; the user asks for it.)
#: * ``train.deterministic``: whether GPU kernels are deterministic, i.e. reproducibility and
#:   speed; like a thread count it may move the last bits, which is what the user asks for.
#: * ``train.log_every``: how often ``metrics.jsonl`` gets a line.
#: * ``train.checkpoint_every``: how often the state is saved; saving draws no random numbers
#:   and every step reseeds its augmentations from (seed, step), so the steps are the same.
#: * ``data.data_root``, ``tasks[*].data.data_root``: where the data lies (the CLI's
#:   ``--data-root``, which is not part of the recipe, overrides it anyway).
#: * ``data.verify_md5``: whether the MedMNIST file's md5 is checked before use.
#: * ``data.cache_dir``: where ``fuse`` caches the LGG arrays it decodes.
#: * ``eval.overlays``: how many test cases are drawn as PNG overlays after training.
#: * ``top_k``: how many ranked answers ``vqa`` writes per test question (the accuracies use
#:   the top one).
#:
#: Everything else refuses, ``train.epochs`` included (it sets the cosine schedule's length).
OPERATIONAL_KEYS = ("train.num_threads", "train.deterministic", "train.log_every", "train.checkpoint_every",
                    "data.data_root", "tasks[*].data.data_root", "data.verify_md5", "data.cache_dir",
                    "eval.overlays", "top_k")
#: differing keys named in the refusal (the rest are counted)
MAX_SHOWN = 6
#: the run folder's record of the ``--init`` it was started with (:func:`record_init`)
INIT_RECORD = "init.json"
_ABSENT = object()


def check_resume_recipe(output: Path, recipe: Any, resume: bool, may_add: Sequence[str] = (),
                        deferred: Sequence[str] = (), saved: Optional[Dict[str, Any]] = None) -> List[str]:
    """Refuse to resume the run in ``output`` with a recipe other than the one it was started with.

    Compares ``recipe`` (the resolved recipe dataclass the runner is about to write to
    ``<output>/config.yaml``) with the ``config.yaml`` the run wrote, both as plain dicts (the
    new one through the same YAML dump/load, so ``1e-3`` and ``0.001`` are equal). Keys of
    :data:`OPERATIONAL_KEYS` may differ. A recipe field the saved file lacks (written by an
    older medfm) is accepted when the new value is that field's default, which is what the older
    run used; a saved key the recipe no longer has is ignored with a warning.

    Nothing is checked without ``resume`` or when ``output`` has no ``config.yaml`` yet (a new
    run, or one that failed before writing it). Entries of the mappings named in ``may_add``
    (``medfm fuse``: ``models``, whose models train independently) that the saved recipe lacks
    may be added: the resumed run trains only those. A ``config.yaml`` that cannot be read (a run
    from before medfm wrote it, a damaged file) only logs a warning, and the run resumes as the
    recipe says.

    A runner that settles some keys only after reading its data (``finetune`` fits
    ``train.batch_size`` to a small training set) calls it twice: before the data are read, with
    those keys in ``deferred`` (every other difference is refused at once), then with the final recipe.

    Args:
        output: the run folder.
        recipe: the resolved recipe dataclass (after CLI overrides and runner adjustments,
            exactly what the runner writes to ``config.yaml``).
        resume: whether the run continues (``--resume``).
        may_add: top-level mapping keys whose new entries are not differences (e.g. ``("models",)``).
        deferred: dotted keys not compared in this call (:data:`OPERATIONAL_KEYS` syntax), e.g.
            ``("train.batch_size",)`` before the data are read.
        saved: the run's ``config.yaml`` as the caller already read it (:func:`medfm.config.load_yaml`), so that
            it is read once (``medfm fuse``: :func:`medfm.training.fusion_run.refuse_unchecked_resume`); None:
            read here.

    Returns:
        The entries of ``may_add`` that the saved recipe lacks, as dotted keys (``["models.late"]``; the caller
        may check what the run folder holds for them); ``[]`` when nothing was compared.

    Raises:
        ConfigError: the recipes differ in a key that changes the training result; the message
            lists them as ``train.lr: 0.002 -> 0.001`` (saved -> new, at most :data:`MAX_SHOWN`). An entry of a
            ``may_add`` mapping that the new recipe drops is named first, as such (``the recipe leaves out models
            'late' of the run (its models: 'late', 'single_pre'; a resume cannot drop one)``; it was listed setting by
            setting as ``models.late.fuser: '3mat' -> (not set)``): a resume cannot leave a model of the run out.
    """
    path = Path(output) / "config.yaml"
    if not resume or not Path(output).is_dir():
        return []
    if saved is None and not path.exists():
        if any(Path(output).rglob(STATE_JSON)):
            log.warning("%s has no config.yaml to compare the recipe with (a run from an older medfm?); "
                        "resuming with the recipe as given", output)
        return []
    try:
        saved = load_yaml(path) if saved is None else saved
    except ConfigError as err:
        log.warning("cannot compare the recipe with the run's saved one (%s); resuming with the recipe as given", err)
        return []
    new = parse_recipe_yaml(dump_yaml(recipe))
    for m in may_add:  # an entry may be added, not left out: its results would vanish from the run's
        kept = new.get(m) if isinstance(new.get(m), dict) else {}
        dropped = [k for k in saved.get(m) or {} if k not in kept] if isinstance(saved.get(m), dict) else []
        if dropped:
            names, them = ", ".join(repr(str(k)) for k in dropped), ("them" if len(dropped) > 1 else "it")
            raise ConfigError(f"cannot resume {output}: the recipe leaves out {m} {names} of the run (its {m}: "
                              f"{', '.join(repr(str(k)) for k in saved[m])}; a resume cannot drop one); put {them} "
                              f"back, or choose a new --output for the new set of {m} (the run's recipe: {path})")
    added = [f"{m}.{k}" for m in may_add if isinstance(new.get(m), dict)
             for k in new[m] if k not in (saved.get(m) or {})]
    diffs = [d for d in setting_differences(saved, new, recipe, skip=OPERATIONAL_KEYS + tuple(deferred))
             if not any(d.startswith(f"{a}.") or d.startswith(f"{a}:") for a in added)]
    if diffs:
        shown = "; ".join(diffs[:MAX_SHOWN]) + (f"; and {len(diffs) - MAX_SHOWN} more"
                                                if len(diffs) > MAX_SHOWN else "")
        raise ConfigError(f"cannot resume {output}: the run was started with other settings ({shown}); "
                          "choose a new --output for the new settings, or resume with the run's recipe "
                          f"(saved in {path})")
    return added


def setting_differences(saved: Any, new: Any, recipe: Any = None, skip: Sequence[str] = ()) -> List[str]:
    """``["train.lr: 0.002 -> 0.001", ...]`` (saved -> new) for every leaf where two settings trees differ.

    Args:
        saved, new: plain dicts (e.g. a run's saved ``config.yaml`` and the recipe about to run).
        recipe: the new recipe dataclass, when there is one: a field the saved tree lacks then
            counts as its default (what an older medfm used); None compares the trees as they are.
        skip: dotted keys that may differ (list indices written ``[*]``).
    """
    return [f"{key}: {_show(old_value)} -> {_show(new_value)}"
            for key, old_value, new_value in _differences(saved, new, recipe, "")
            if re.sub(r"\[\d+\]", "[*]", key) not in skip]


def init_identity(init: Optional[str]) -> Optional[str]:
    """What :func:`check_resume_init` compares: :func:`medfm.hub.checkpoint_reference` of ``init``
    (a local path made absolute, ``hf-hub:`` ids and ``timm`` as written), or None without ``init``.
    """
    from medfm.hub import checkpoint_reference

    return None if init is None else checkpoint_reference(init)


def record_init(output: Path, init: Optional[str], resume: bool) -> None:
    """Write ``<output>/init.json`` (``{"init": as given, "identity": init_identity(init)}``, atomically).

    Runners that take ``--init`` call it where they write ``config.yaml``. A resume keeps the
    record the run was started with (:func:`check_resume_init` has accepted the new ``--init`` as
    the same); a resume of a run without a record (an older medfm) writes one.

    Raises:
        OSError: ``output`` cannot be written.
    """
    from medfm.io import atomic_write_json

    path = Path(output) / INIT_RECORD
    if resume and path.is_file():
        return
    atomic_write_json(path, {"init": None if init is None else str(init), "identity": init_identity(init)})


def check_resume_init(output: Path, init: Optional[str], resume: bool) -> None:
    """Refuse to resume the run in ``output`` with another ``--init`` than it was started with.

    Compares :func:`init_identity` of ``init`` with the one in ``<output>/init.json``: the same
    checkpoint by another spelling of its path (relative or absolute, ``~``, a symbolic link) is
    accepted; another checkpoint, none when the run had one, or one when the run had none is
    refused. (A checkpoint moved since the run started is another path: refused.) The recipe's
    ``encoder.pretrained`` is compared by :func:`check_resume_recipe`.

    Nothing is checked without ``resume`` or without ``output``; a run folder with no readable
    record (a run from an older medfm) only logs a warning when it holds ``config.yaml`` or a
    training state, and resumes with ``init`` as given.

    Args:
        output: the run folder.
        init: the ``--init`` given now (None: not given).
        resume: whether the run continues (``--resume``).

    Raises:
        ConfigError: one line naming both values, e.g. ``cannot resume runs/ft: it was started with
            --init /abs/runs/pt/checkpoint, this resume has --init /abs/runs/other; ...``.
    """
    import json

    output = Path(output)
    if not resume or not output.is_dir():
        return
    path = output / INIT_RECORD
    try:
        saved: Dict[str, Any] = json.loads(path.read_text())
        old = saved["identity"]
        if old is not None and not isinstance(old, str):
            raise ValueError(f"identity is {old!r}")
    except FileNotFoundError:
        if (output / "config.yaml").exists() or any(output.rglob(STATE_JSON)):
            log.warning("%s has no %s recording the --init it was started with (a run from an older medfm?); "
                        "resuming with %s", output, INIT_RECORD, _show_init(init_identity(init)))
        return
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cannot read %s (%s); resuming with %s", path, err, _show_init(init_identity(init)))
        return
    new = init_identity(init)
    if new != old:
        raise ConfigError(f"cannot resume {output}: it was started with {_show_init(old)}, this resume has "
                          f"{_show_init(new)}; resume with {_show_init(old)}, or choose a new --output for the "
                          "new starting point")


def _show_init(identity: Optional[str]) -> str:
    """``--init <identity>`` or ``no --init``."""
    return "no --init" if identity is None else f"--init {identity}"


def _show(value: Any) -> str:
    """A value as in the recipe (``null``, ``true``, ``0.002``), or ``(not set)``."""
    if value is _ABSENT:
        return "(not set)"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value) if isinstance(value, str) else str(value)


def _field_default(field: "dataclasses.Field[Any]") -> Any:
    """A dataclass field's default value, or :data:`_ABSENT` for a required field."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return _ABSENT


def _same(a: Any, b: Any) -> bool:
    """Equal leaves: same type and value (NaN equals NaN; ``1`` equals ``1.0``, ``true`` is not ``1``)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return (numbers or type(a) is type(b)) and a == b


def _differences(saved: Any, new: Any, obj: Any, key: str) -> Iterator[Tuple[str, Any, Any]]:
    """``(dotted key, saved value, new value)`` for every leaf where ``saved`` and ``new`` differ.

    ``obj`` is the recipe object at ``key`` (a dataclass tells which keys are its fields and
    their defaults); missing keys are :data:`_ABSENT`.
    """
    def sub(name: Any) -> str:
        return f"{key}[{name}]" if isinstance(name, int) else (f"{key}.{name}" if key else str(name))

    if isinstance(saved, dict) and isinstance(new, dict):
        fields = {f.name: f for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
        for name in list(new) + [k for k in saved if k not in new]:
            child = getattr(obj, name, None) if fields else (obj.get(name) if isinstance(obj, dict) else None)
            if name not in saved:
                default = _ABSENT
                if name in fields:
                    default = to_dict(_field_default(fields[name]))
                if not _same_tree(default, new[name]):
                    yield from _leaves(new[name], sub(name), new=True)
            elif name not in new:
                if fields:  # a field of an older medfm
                    log.warning("the saved recipe has %s: %r, which this medfm no longer reads; ignored", sub(name),
                                saved[name])
                else:  # e.g. an objective argument the new recipe leaves out
                    yield from _leaves(saved[name], sub(name), new=False)
            else:
                yield from _differences(saved[name], new[name], child, sub(name))
    elif isinstance(saved, list) and isinstance(new, list) and len(saved) == len(new):
        items = obj if isinstance(obj, (list, tuple)) and len(obj) == len(new) else [None] * len(new)
        for i, (s, n, o) in enumerate(zip(saved, new, items)):
            yield from _differences(s, n, o, sub(i))
    elif not _same_tree(saved, new):
        yield key, saved, new


def _same_tree(a: Any, b: Any) -> bool:
    """Equal plain trees (dicts, lists/tuples, leaves as in :func:`_same`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_tree(x, y) for x, y in zip(a, b))
    return _same(a, b)


def _leaves(value: Any, key: str, new: bool) -> Iterator[Tuple[str, Any, Any]]:
    """A value present on one side only, as ``(key, saved, new)`` per leaf (a whole section
    added to or missing from a free-form mapping is listed by its leaves)."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}", new)
    else:
        yield (key, _ABSENT, value) if new else (key, value, _ABSENT)
