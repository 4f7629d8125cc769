"""Which evaluation-suite protocol uses which option: the one table (:data:`PROTOCOL_OPTIONS`) read both
when a suite is loaded (:mod:`medfm.evaluation.suite_spec`) and by the ``medfm`` command's checks made
before torch is imported (:mod:`medfm.cli_checks`). Pure Python: importing it imports neither torch nor
the ``medfm.evaluation`` package (whose import does), so ``medfm eval --suite s.yaml --probe-c 0.1`` with
an ``as-is`` suite is refused at once instead of after 5-8 s of imports; the rules of a probe C
(:func:`parse_probe_c`) and of label fractions (:func:`parse_label_fractions`) are here for the same reason
(``--probe-c abc`` and ``--label-fraction abc`` are named malformed at once, and so is a training recipe's
``data.label_fraction: 1.5``: :func:`check_label_fraction`, the rule and words of one fraction, which lives in
:mod:`medfm.arg_checks` for :mod:`medfm.data`'s use and is re-exported here).

The protocols themselves (``as-is``, ``linear``, ``knn``, ``finetune``) are :data:`PROTOCOLS`, defined here
once and re-exported as :data:`medfm.evaluation.protocols.PROTOCOLS`. A suite file's ``protocol`` section is
read by :func:`check_protocol_section` into :class:`ProtocolOptions` (every rule of :class:`ProtocolSpec`, its
subclass, but the ``finetune`` settings, a partial fine-tuning recipe), then its ``finetune`` settings by
:class:`ProtocolSpec`'s rule (:func:`check_finetune_settings`): :func:`medfm.evaluation.suite_spec.load_suite`
reads it so first, and ``medfm eval --suite`` before the run's imports (a misspelt protocol or an option its
protocol ignores was named after 2-4 s of imports; the ``finetune`` settings are checked last, torch-free too:
:mod:`medfm.cli_checks`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

# pure Python too; check_label_fraction (one fraction: a recipe's data.label_fraction) is re-exported here
from medfm.arg_checks import check_label_fraction, check_number, label_fraction_error, number_fits, shown
from medfm.config import ConfigError, check_value_type, from_dict  # pure Python too (yaml)
from medfm.registry import close_match_hint

#: the evaluation-suite protocols (:func:`medfm.evaluation.protocols.check_protocol`); ``medfm eval
#: --protocol`` also takes ``zeroshot`` (:mod:`medfm.cli_parser`), which is no suite protocol
PROTOCOLS = ("as-is", "linear", "knn", "finetune")

#: a suite's protocol when its file names none (:class:`ProtocolSpec`)
DEFAULT_PROTOCOL = "as-is"

#: each protocol option of a suite file: (the protocols that use it, what it sets); a suite file setting
#: one that its protocol ignores is refused by :func:`medfm.evaluation.suite_spec.load_suite`
#: (:func:`check_protocol_options`), a command-line override of one by :func:`check_protocol_overrides`
PROTOCOL_OPTIONS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "label_fractions": (("linear", "knn", "finetune"), "the share of training labels fitted on"),
    "seed": (("linear", "knn", "finetune"), "the seed of the label draw and the fit"),
    "linear_c": (("linear",), "the linear probe's C"),
    "knn_k": (("knn",), "kNN's number of neighbours"),
    "knn_temperature": (("knn",), "kNN's vote temperature"),
    "finetune": (("finetune",), "the fine-tuning settings"),
}


def _one_of(names: Tuple[str, ...], last: str = "or") -> str:
    """``("a", "b", "c")`` -> ``"a, b or c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def check_protocol_options(given: Any, protocol: str) -> None:
    """Refuse the options ``given`` (the keys a suite file's ``protocol`` section sets) that ``protocol``
    does not use (:data:`PROTOCOL_OPTIONS`): they were ignored without a word (``label_fractions`` with
    ``as-is``, ``linear_c`` with ``knn``, ``finetune`` settings with ``linear``, ...). Keys that are not
    options (``name``) pass.

    Raises:
        ValueError: one line naming the first such key, what it sets, the protocols that use it and
            this suite's protocol.
    """
    for key in given:
        users, what = PROTOCOL_OPTIONS.get(key, (None, ""))
        if users is not None and protocol not in users:
            verb = "use" if len(users) > 1 else "uses"
            raise ValueError(f"protocol.{key} ({what}) would be ignored: only the {_one_of(users, 'and')} "
                             f"protocol{'s' if len(users) > 1 else ''} {verb} it, this suite's is {protocol}; "
                             f"remove it or set protocol.name: {_one_of(users)}")


def parse_probe_c(value: Any, where: str = "linear_c") -> Union[float, str]:
    """A probe C from YAML or the command line: a positive finite number (or its text, ``"0.1"``) or ``"val"``
    (any case, blanks around it dropped). Torch-free, so that ``medfm eval --probe-c abc`` is named malformed
    before the imports, and before whether its protocol uses it (:mod:`medfm.cli_checks`).

    Args:
        where: what gave the value, put first in the message (``"--probe-c"`` on the command line).

    Returns:
        the number as a float, or ``"val"``.

    Raises:
        ValueError: anything else (``True``, NaN, inf and ``0`` too): ``"linear_c must be a positive number or
            'val', got 'abc'"``.
    """
    if isinstance(value, str):
        if value.strip().lower() == "val":
            return "val"
        try:
            number: Any = float(value)
        except ValueError:
            number = None
    else:
        number = value
    if not number_fits(number, gt=0):
        got = repr(value) if isinstance(value, str) else shown(value)
        raise ValueError(f"{where} must be a positive number or 'val', got {got}")
    return float(number)


#: the example a label-fraction message gives: of a comma list, of one fraction (``single``: ``medfm finetune``)
_FRACTIONS_EXAMPLE = "give a comma list such as 0.01,0.1,1"
_ONE_FRACTION_EXAMPLE = "give one fraction such as 0.1"


def parse_label_fractions(value: Any, where: str = "protocol.label_fractions",
                          single: bool = False) -> Tuple[float, ...]:
    """Label fractions, each in (0, 1]: a comma list (``"0.01,0.1,1"``, ``medfm eval --label-fraction``; blanks
    and empty items dropped) or a sequence of numbers (a suite file's ``protocol.label_fractions``). The one
    rule of :class:`ProtocolSpec` and :func:`~medfm.evaluation.suite_spec.suite_overrides`;
    torch-free, so that ``medfm eval --label-fraction abc`` is named malformed before the imports, and before
    whether its protocol uses label fractions (:mod:`medfm.cli_checks`).

    Args:
        value: the comma list, or the sequence.
        where: what the range message names (``"protocol.label_fractions must be in (0, 1], got [1.5]"``).
        single: a comma list must hold one fraction (``medfm finetune --label-fraction``: one run trains on one
            share of the labels); its messages give one fraction as the example.

    Returns:
        the fractions: a comma list's as floats, a sequence's items as given (``(0.01, 1)``).

    Raises:
        ValueError: a comma-list item that is no number (``"label fraction 'abc' in '0.1,abc' is not a number;
            give a comma list such as 0.01,0.1,1"``), a comma list without an item (``","``), with ``single``
            one with more than one (``"'0.1,0.5' holds 2 label fractions; give one fraction such as 0.1"``), or a
            fraction outside (0, 1] (``True``, NaN and an empty sequence too).
        TypeError: ``value`` is neither a string nor iterable.
    """
    if isinstance(value, str):
        example = _ONE_FRACTION_EXAMPLE if single else _FRACTIONS_EXAMPLE
        items = []
        for item in (t.strip() for t in value.split(",")):
            if not item:
                continue
            try:
                items.append(float(item))
            except ValueError:
                raise ValueError(f"label fraction {item!r} in {value!r} is not a number; {example}") from None
        if not items:  # "... must be in (0, 1], got []" named no fraction to fix
            raise ValueError(f"no label fraction in {value!r}; {example}")
        if single and len(items) > 1:
            raise ValueError(f"{value!r} holds {len(items)} label fractions; {example}")
        fractions: Tuple[Any, ...] = tuple(items)
    else:
        fractions = tuple(value)
    if not fractions or not all(number_fits(f, gt=0, le=1) for f in fractions):
        raise label_fraction_error(where, repr(list(fractions)))
    return fractions


def check_protocol_overrides(protocol: str, label_fractions: Optional[Any] = None,
                             probe_c: Optional[Any] = None) -> None:
    """Refuse ``medfm eval --suite`` overrides that the run's ``protocol`` would ignore (they were dropped
    without a word, exit 0): ``--label-fraction`` for a protocol that fits on no labels (``as-is``),
    ``--probe-c`` for another than ``linear`` (:data:`PROTOCOL_OPTIONS`). Only whether each was given
    (not None) counts; its value is checked where it is applied
    (:func:`medfm.evaluation.suite_spec.suite_overrides`), and a malformed ``--probe-c`` or ``--label-fraction``
    before this check by the command line (:func:`parse_probe_c`, :func:`parse_label_fractions`: a malformed
    value is named as such, not as ignored).

    Args:
        protocol: the run's protocol: ``--protocol`` when given, else the suite file's.

    Raises:
        ValueError: ``"--label-fraction: the as-is protocol scores each checkpoint as it is, fitting on no
            labels; add --protocol linear, knn or finetune"``, ``"--probe-c: only the linear protocol fits a
            probe, this run's is knn; add --protocol linear"``.
    """
    users = PROTOCOL_OPTIONS["label_fractions"][0]
    if label_fractions is not None and protocol not in users:
        raise ValueError(f"--label-fraction: the {protocol} protocol scores each checkpoint as it is, fitting on no "
                         f"labels; add --protocol {_one_of(users)}")
    users = PROTOCOL_OPTIONS["linear_c"][0]
    if probe_c is not None and protocol not in users:
        raise ValueError(f"--probe-c: only the {_one_of(users)} protocol fits a probe, this run's is {protocol}; "
                         f"add --protocol {_one_of(users)}")


def check_protocol_name(name: Any) -> str:
    """``name`` if it is a suite protocol (:data:`PROTOCOLS`), else a one-line error with close matches; torch-free.
    The one protocol-name rule: :class:`ProtocolOptions` (a suite file's ``protocol`` section, early in the command
    line and in the suite reader) and the evaluation code, which imports it as
    :func:`medfm.evaluation.protocols.check_protocol`.

    Raises:
        ValueError: ``"unknown protocol 'lineer'; did you mean 'linear'? (valid: as-is, linear, knn, finetune)"``.
    """
    if name in PROTOCOLS:
        return name
    hint = close_match_hint(name, PROTOCOLS, cutoff=0.4, fallback=None)
    raise ValueError(f"unknown protocol {name!r}{hint} (valid: {', '.join(PROTOCOLS)})")


@dataclass
class ProtocolOptions:
    """A suite file's ``protocol`` section but for its ``finetune`` settings' check: every field and rule of
    :class:`ProtocolSpec` (its subclass, which adds the check of the ``finetune`` settings, torch-free too), so
    that the command line's early check (:func:`check_protocol_section`) and the suite reader cannot differ.
    The fields are documented there.

    Raises:
        ValueError: an unknown protocol (:func:`check_protocol_name`), a bad ``linear_c`` (:func:`parse_probe_c`),
            a label fraction not in (0, 1] (:func:`parse_label_fractions`), ``knn_k`` not an integer >= 1,
            ``knn_temperature`` not a finite number > 0, ``seed`` not an integer >= 0, ``finetune`` not a mapping
            (a ConfigError: ``"protocol.finetune must be a mapping, got 'full' (str)"``); in this order. Each message
            names its key as ``protocol.<key>`` (``"protocol.name: unknown protocol 'lineer'; ..."``,
            ``"protocol.linear_c must be a positive number or 'val', got 'abc'"``), so that a suite file's reader
            puts the file first once: ``"s.yaml: protocol.linear_c ..."``.
    """

    name: str = DEFAULT_PROTOCOL
    label_fractions: Tuple[float, ...] = (1.0,)
    knn_k: int = 11
    knn_temperature: float = 0.07
    linear_c: Union[float, str] = 1.0
    finetune: Dict[str, Any] = field(default_factory=lambda: {"mode": "full"})
    seed: int = 0

    def __post_init__(self) -> None:
        # every message names its key as protocol.<key> (a suite file's location then comes once, first:
        # "s.yaml: protocol.linear_c must be ...", as for protocol.knn_k; medfm.config.from_dict)
        try:
            check_protocol_name(self.name)
        except ValueError as err:
            raise ValueError(f"protocol.name: {err}") from None
        self.linear_c = parse_probe_c(self.linear_c, "protocol.linear_c")
        self.label_fractions = parse_label_fractions(self.label_fractions)
        check_number("protocol.knn_k", self.knn_k, ge=1, integer=True)
        check_number("protocol.knn_temperature", self.knn_temperature, gt=0)
        check_number("protocol.seed", self.seed, ge=0, integer=True)
        # given in Python (from_dict checks a file's): "full" was read as the unknown keys 'f', 'u', 'l'
        self.finetune = check_value_type(self.finetune, Dict[str, Any], "protocol.finetune", from_file=False)


#: the protocol options whose settings are a recipe's, checked as one (:func:`check_finetune_settings`):
#: :func:`check_protocol_section` checks them, and names them ignored by the protocol, only when asked to
#: (``settings``), after the other options (a bad setting before an ignored section, as any bad value)
READER_CHECKED_OPTIONS = ("finetune",)


#: the :class:`medfm.training.recipes.FinetuneRecipe` sections that each fine-tuning run of a suite sets itself
#: (the dataset's ``data``, the checkpoint's ``encoder``): a suite's ``protocol.finetune`` may not set them
PER_RUN_SECTIONS = ("data", "encoder")


def check_finetune_keys(settings: Any) -> None:
    """The one unknown-key rule of a suite's ``protocol.finetune`` (its keys are those of a
    :class:`medfm.training.recipes.FinetuneRecipe` but :data:`PER_RUN_SECTIONS`): the suite reader's and the
    early check's (:func:`check_finetune_settings`) and the fine-tuning runs' own
    (:func:`medfm.evaluation.finetune_protocol.finetune_recipe`). Torch-free: the recipe's section classes live in
    torch-free modules (:mod:`medfm.training.train_config`, :mod:`medfm.data.view_config`, :mod:`medfm.lora_settings`;
    it imported torch, timm and torchvision, 3-6 s).

    The first unknown key (in ``settings``' order) is named with the hint that helps: a setting of a recipe
    section is told where it belongs (a close match would mislead: ``lr`` looks like ``lora``), a per-run key
    that each run sets it, anything else gets the close match of the valid keys (the rule and words of
    :func:`medfm.config.from_dict`, :func:`medfm.config.unknown_key_hint`).

    Args:
        settings: the ``protocol.finetune`` mapping (only its keys are read).

    Raises:
        ConfigError: ``"protocol.finetune: unknown key 'lr'; it is a train setting: write train: {lr: ...}"``,
            ``"protocol.finetune: unknown key 'data'; data and encoder are set by each run (valid keys: mode, lora,
            dropout, head_norm, augment, train)"``, ``"protocol.finetune: unknown key 'mdoe'; did you
            mean 'mode'?"``; an option of the protocol itself is told so (it was told "it is a train setting"):
            ``"protocol.finetune: unknown key 'seed'; it is a protocol option (the seed of the label draw and the
            fit): write protocol: {seed: ...}; train: {seed: ...} sets the fit's alone"``.
    """
    from dataclasses import fields

    from medfm.config import a_setting_of, section_owners, unknown_key_hint
    from medfm.training.recipes import FinetuneRecipe

    valid = [f.name for f in fields(FinetuneRecipe) if f.name not in PER_RUN_SECTIONS]
    per_run = f"{' and '.join(PER_RUN_SECTIONS)} are set by each run (valid keys: {', '.join(valid)})"
    for key in settings:
        if key in valid:
            continue
        owners = section_owners(FinetuneRecipe, key)
        if key in PER_RUN_SECTIONS:
            hint = f"; {per_run}"
        elif owners and not set(owners) & set(valid):  # only a per-run section has it
            hint = f"; it is {a_setting_of(owners)}, and {per_run}"
        elif key != "finetune" and "finetune" in PROTOCOL_OPTIONS.get(key, ((),))[0]:  # seed, label_fractions
            settable = [s for s in owners if s in valid]  # train.seed: the fit's alone (was the only hint)
            alone = "".join(f"; {s}: {{{key}: ...}} sets the fit's alone" for s in settable)
            hint = f"; it is a protocol option ({PROTOCOL_OPTIONS[key][1]}): write protocol: {{{key}: ...}}{alone}"
        else:
            hint = unknown_key_hint(FinetuneRecipe, key, valid)
        raise ConfigError(f"protocol.finetune: unknown key {key!r}{hint}")


def check_finetune_settings(settings: Dict[str, Any]) -> None:
    """Check a suite's ``protocol.finetune`` as a partial :class:`medfm.training.recipes.FinetuneRecipe` (the
    fine-tuning runs' own reader; ``train.epochs`` may be left out: chosen per label fraction). The one rule of
    :class:`ProtocolSpec`, which the suite reader and ``medfm eval --suite``'s early check
    (:func:`check_protocol_section` with ``settings``) both apply. Torch-free, as :func:`check_finetune_keys`.

    Raises:
        ConfigError: an unknown or per-run key (``data``, ``encoder``: :func:`check_finetune_keys`), a wrong type
            or a bad value, named ``protocol.finetune...`` (``"protocol.finetune: mode must be one of ('linear',
            'full', 'lora'), got 'most'"``; the runs would otherwise fail one by one).
    """
    from medfm.training.recipes import FinetuneRecipe

    check_finetune_keys(settings)
    train = settings.get("train")
    if isinstance(train, dict):  # epochs may be left out (chosen per label fraction)
        train = {"epochs": 1, **train}
    from_dict(FinetuneRecipe, {**settings, "train": train}, where="protocol.finetune")


@dataclass
class ProtocolSpec(ProtocolOptions):
    """Protocol ``name`` (as-is | linear | knn | finetune), label fractions, kNN k/T, probe C: a suite's
    ``protocol`` section (:class:`medfm.evaluation.suite_spec.Suite`; that module re-exports the class).

    The fields and their rules are :class:`ProtocolOptions` (torch-free); this class adds the check of the
    ``finetune`` settings (:func:`check_finetune_settings`, torch-free too). Which protocol uses which option
    is :data:`PROTOCOL_OPTIONS` (a suite file setting one its protocol ignores is refused when read,
    :func:`check_protocol_section`).

    ``label_fractions``: each in (0, 1], a sequence (or a comma list: the rule of :func:`parse_label_fractions`,
    which ``medfm eval --label-fraction`` is checked by too).

    ``linear_c``: the probe's inverse L2 strength, a positive number, or ``"val"`` to choose
    it per label fraction by accuracy on each dataset's ``val_split``
    (:func:`medfm.evaluation.protocols.select_probe_c`, CLIP's protocol).
    ``finetune``: settings of the ``finetune`` protocol (a partial fine-tuning recipe:
    ``mode``, ``lora``, ``augment``, ``dropout``, ``train``;
    :mod:`medfm.evaluation.finetune_protocol`).

    Raises:
        ValueError: an unknown protocol, a label fraction not in (0, 1], ``knn_k`` not an integer
            >= 1, ``knn_temperature`` not a finite number > 0, a bad ``linear_c``, ``seed`` not an integer >= 0.
        ConfigError: a bad ``finetune`` setting (after the others).
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finetune_settings(self.finetune)


@dataclass
class _SuiteProtocol:
    """A suite file with its ``protocol`` key alone, so that :func:`medfm.config.from_dict` checks the section
    as it does a :class:`medfm.evaluation.suite_spec.Suite`'s (a list: ``"s.yaml.protocol must be a mapping of its
    settings, got ['linear']"``)."""

    protocol: ProtocolOptions = field(default_factory=ProtocolOptions)


@dataclass
class _SuiteProtocolSpec:
    """:class:`_SuiteProtocol` read as the suite reader reads it (:class:`ProtocolSpec`: the ``finetune`` settings
    too)."""

    protocol: ProtocolSpec = field(default_factory=ProtocolSpec)


def check_protocol_section(section: Any, where: str, settings: bool = False) -> ProtocolOptions:
    """Read a suite file's ``protocol`` section (its YAML value; None or left out: the defaults) as
    :func:`medfm.evaluation.suite_spec.load_suite` reads it, first: the section's keys, types and values
    (:class:`ProtocolOptions`, torch-free), then the options its protocol does not use
    (:func:`check_protocol_options`), but for :data:`READER_CHECKED_OPTIONS`; then, with ``settings`` and when the
    section sets one of those, its settings (:class:`ProtocolSpec`: :func:`check_finetune_settings`) and whether
    the protocol uses it. Torch-free: ``medfm eval --suite`` runs it before torch is imported, and with
    ``settings`` after its other checks (:mod:`medfm.cli_checks`), so a bad ``finetune:`` setting is named as the
    suite reader names it, before the run's imports.

    Args:
        where: the suite file's name, put first in a message (``"s.yaml.protocol: unknown key 'linear_cc'; did
            you mean 'linear_c'?"``, ``"s.yaml: protocol.linear_c (the linear probe's C) would be ignored: ..."``,
            ``"s.yaml: protocol.finetune: mode must be one of ('linear', 'full', 'lora'), got 'most'"``).
        settings: check the :data:`READER_CHECKED_OPTIONS` too.

    Returns:
        the section's options (with ``settings`` and a ``finetune:`` section: a :class:`ProtocolSpec`).

    Raises:
        ConfigError: the first mistake, in that order.
    """
    options = from_dict(_SuiteProtocol, {"protocol": section}, where=where).protocol
    given = list(section or {})  # a mapping: from_dict checked it
    late = [key for key in given if key in READER_CHECKED_OPTIONS]
    try:
        check_protocol_options([key for key in given if key not in late], options.name)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    if settings and late:
        options = from_dict(_SuiteProtocolSpec, {"protocol": section}, where=where).protocol
        try:
            check_protocol_options(late, options.name)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    return options


__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "PROTOCOL_OPTIONS", "check_protocol_options", "parse_probe_c",
           "parse_label_fractions", "check_label_fraction", "check_protocol_overrides", "check_protocol_name",
           "ProtocolOptions", "READER_CHECKED_OPTIONS", "PER_RUN_SECTIONS", "check_finetune_keys",
           "check_finetune_settings", "ProtocolSpec",
           "check_protocol_section"]
