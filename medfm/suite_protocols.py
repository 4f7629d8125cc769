"""Which evaluation-suite protocol uses which option: the one table (:data:`PROTOCOL_OPTIONS`) read both
when a suite is loaded (:mod:`medfm.evaluation.suite_spec`) and by the ``medfm`` command's checks made
before torch is imported (:mod:`medfm.cli_checks`). Pure Python: importing it imports neither torch nor
the ``medfm.evaluation`` package (whose import does), so ``medfm eval --suite s.yaml --probe-c 0.1`` with
an ``as-is`` suite is refused at once instead of after 5-8 s of imports; the rules of a probe C
(:func:`parse_probe_c`) and of label fractions (:func:`parse_label_fractions`) are here for the same reason
(``--probe-c abc`` and ``--label-fraction abc`` are named malformed at once).

The protocols themselves (``as-is``, ``linear``, ``knn``, ``finetune``) are :data:`PROTOCOLS`, defined here
once and re-exported as :data:`medfm.evaluation.protocols.PROTOCOLS`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

from medfm.arg_checks import number_fits, shown  # pure Python too

#: the evaluation-suite protocols (:func:`medfm.evaluation.protocols.check_protocol`); ``medfm eval
#: --protocol`` also takes ``zeroshot`` (:mod:`medfm.cli_parser`), which is no suite protocol
PROTOCOLS = ("as-is", "linear", "knn", "finetune")

#: a suite's protocol when its file names none (:class:`medfm.evaluation.suite_spec.ProtocolSpec`)
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


#: the example a label-fraction message gives
_FRACTIONS_EXAMPLE = "give a comma list such as 0.01,0.1,1"


def parse_label_fractions(value: Any, where: str = "protocol.label_fractions") -> Tuple[float, ...]:
    """Label fractions, each in (0, 1]: a comma list (``"0.01,0.1,1"``, ``medfm eval --label-fraction``; blanks
    and empty items dropped) or a sequence of numbers (a suite file's ``protocol.label_fractions``). The one
    rule of :class:`medfm.evaluation.suite_spec.ProtocolSpec` and :func:`~medfm.evaluation.suite_spec.suite_overrides`;
    torch-free, so that ``medfm eval --label-fraction abc`` is named malformed before the imports, and before
    whether its protocol uses label fractions (:mod:`medfm.cli_checks`).

    Args:
        value: the comma list, or the sequence.
        where: what the range message names (``"protocol.label_fractions must be in (0, 1], got [1.5]"``).

    Returns:
        the fractions: a comma list's as floats, a sequence's items as given (``(0.01, 1)``).

    Raises:
        ValueError: a comma-list item that is no number (``"label fraction 'abc' in '0.1,abc' is not a number;
            give a comma list such as 0.01,0.1,1"``), a comma list without an item (``","``), or a fraction
            outside (0, 1] (``True``, NaN and an empty sequence too).
        TypeError: ``value`` is neither a string nor iterable.
    """
    if isinstance(value, str):
        items = []
        for item in (t.strip() for t in value.split(",")):
            if not item:
                continue
            try:
                items.append(float(item))
            except ValueError:
                raise ValueError(f"label fraction {item!r} in {value!r} is not a number; "
                                 f"{_FRACTIONS_EXAMPLE}") from None
        if not items:  # "... must be in (0, 1], got []" named no fraction to fix
            raise ValueError(f"no label fraction in {value!r}; {_FRACTIONS_EXAMPLE}")
        fractions: Tuple[Any, ...] = tuple(items)
    else:
        fractions = tuple(value)
    if not fractions or not all(number_fits(f, gt=0, le=1) for f in fractions):
        raise ValueError(f"{where} must be in (0, 1], got {list(fractions)}")
    return fractions


def check_protocol_overrides(protocol: str, label_fractions: Optional[Any] = None, probe_c: Optional[Any] = None) -> None:
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


__all__ = ["PROTOCOLS", "DEFAULT_PROTOCOL", "PROTOCOL_OPTIONS", "check_protocol_options", "parse_probe_c",
           "parse_label_fractions", "check_protocol_overrides"]
