"""The rules for one argument (a size, a count, a ratio, a temperature; a list of names; an index or mask
tensor), shared by every layer.

:func:`medfm.objectives.inputs.check_arg` (objectives) and :mod:`medfm.encoders.checks` (encoders)
are thin wrappers over :func:`check_number`. This module imports nothing from medfm, nor torch or
numpy, so any module can use it (encoders cannot import from objectives, which import encoders).
Class labels and segmentation targets are no index tensors here: they come from data files (often
stored as floats) and whole-number floats are accepted there
(:func:`medfm.adapters.classification.check_class_labels`, :func:`medfm.adapters.segmentation.check_target`).

The rules:

- an integer argument is an integral number and not a ``bool``: ``2.5``, ``16.0``, ``"3"`` and
  ``True`` are refused rather than truncated or taken as 1 (numpy integers are accepted);
- any other numeric argument is a finite real number (ints accepted, ``bool`` never, NaN/inf refused);
- bounds are inclusive (``ge``/``le``) or strict (``gt``/``lt``);
- a message shows a bad number as a plain Python number (``3.0``, ``-1``, ``nan``; numpy
  scalars too), a list or tuple by its ``repr``, anything else with its type (``'3' (str)``,
  ``True (bool)``);
- a switch is a ``bool`` (:func:`check_bool`): ``"no"`` or ``1`` is refused, not taken by its truth value;
- a label fraction (the share of training labels a run fits on) is a number in (0, 1], and one message says
  so for a number out of range, NaN, ``True`` or a string alike (:func:`check_label_fraction`,
  :func:`label_fraction_error`): the rule of a recipe's ``data.label_fraction``, of ``--label-fraction`` and a
  suite's ``protocol.label_fractions`` (:mod:`medfm.suite_protocols`), of the probes' label subsets
  (:func:`medfm.evaluation.protocols.subset_indices`), of the ``finetune`` protocol's epochs
  (:func:`medfm.evaluation.finetune_protocol.auto_epochs`) and of the stratified draw
  (:func:`medfm.data.medmnist.label_fraction_indices`), here because :mod:`medfm.data` may import nothing heavier;
- an attention width and its head count (:func:`check_heads`, used by the fusers, the VQA fusion and
  neighbourhood attention) are integers >= 1, the width divisible by the heads, and one message gives both;
- a list argument (class names, modalities, answers, questions, texts, templates) is a list, not one
  string (:func:`check_string_list`, :func:`check_list`): ``"abc"`` is refused, not read as the names
  ``a``, ``b``, ``c``; so are bytes, a mapping (its keys), a set (no order: the order of names gives class,
  answer or modality indices, and a set of strings is ordered differently in every process) and anything
  not iterable; the items are strings (integers too where ``integers``: names that YAML reads as numbers),
  or mappings (:func:`check_mapping_list`: log records, table rows; a refused one named by its type and index);
- a tensor of indices (per-sample domains, modality indices) has an integer dtype, not bool, float or
  complex (:func:`is_index_tensor`; no value read back);
- a mask tensor (presence masks, attention masks, known-label flags) is bool, or integer holding only 0
  and 1 (transformers' ``attention_mask``): a float (``0.5`` was taken as True) or an integer 2 is refused
  (:func:`check_mask_tensor`; one value read back for an integer mask, none for a bool one; a refused float
  mask's message names up to 5 of its values other than 0 and 1, read back on the error path only).

A message names no caller: ``temperature must be > 0, got -1.0``; the caller puts its own name
first (``simclr: ``) through ``name``, or its own exception class through ``error``. The tensor rules
read torch from ``sys.modules`` (a tensor given means torch is imported), so this module still imports
nothing heavy.
"""
from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Set
from typing import Any, Callable, List, Optional, Tuple, Type, Union

Number = Union[int, float]


def is_integer(value: Any) -> bool:
    """True for an integral number that is not a ``bool`` (``3``, ``np.int64(3)``; not ``3.0``, ``"3"``, ``True``)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """True for a finite real number that is not a ``bool`` (``0.5``, ``2``, ``np.float32(1)``;
    not NaN, inf, ``"0.5"``, ``True``, nor an int too large for a float)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: Any) -> str:
    """How a message shows a bad value: ``-1``, ``3.0``, ``nan`` (numpy scalars as plain numbers),
    ``[1, 1]`` (lists and tuples by their ``repr``), ``'3' (str)``, ``True (bool)`` (anything else with its type)."""
    if is_integer(value):
        return repr(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return repr(value)
    return f"{value!r} ({type(value).__name__})"


def _bound_text(bound: float) -> str:
    """One bound as a message says it: an integral one exactly (``4294967295``, ``1`` for ``1.0``; ``:g``
    said ``4.29497e+09`` for ``2**32 - 1``), any other by its shortest ``repr`` (``0.5``, ``1e-08``)."""
    if is_integer(bound) or float(bound).is_integer():  # (an int first: one too large for a float)
        return str(int(bound))
    return repr(float(bound))


def range_text(*, gt: Optional[float] = None, ge: Optional[float] = None, lt: Optional[float] = None,
               le: Optional[float] = None) -> str:
    """The bounds as a message says them: ``"> 0"``, ``">= 1"``, ``"in [0, 1)"``, ``"<= 4294967295"``
    (integers exactly), ``""`` for none."""
    text = _bound_text
    low = (f"({text(gt)}" if gt is not None else f"[{text(ge)}") if gt is not None or ge is not None else None
    high = (f"{text(lt)})" if lt is not None else f"{text(le)}]") if lt is not None or le is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return ("> " if gt is not None else ">= ") + low[1:]
    if high:
        return ("< " if lt is not None else "<= ") + high[:-1]
    return ""


def _type_ok(value: Any, integer: bool) -> bool:
    return is_integer(value) if integer else is_finite_number(value)


def _range_ok(x: Number, gt: Optional[float], ge: Optional[float], lt: Optional[float], le: Optional[float],
              odd: bool) -> bool:
    return not ((gt is not None and not x > gt) or (ge is not None and not x >= ge)
                or (lt is not None and not x < lt) or (le is not None and not x <= le) or (odd and x % 2 == 0))


def number_fits(value: Any, *, gt: Optional[float] = None, ge: Optional[float] = None, lt: Optional[float] = None,
                le: Optional[float] = None, integer: bool = False, odd: bool = False) -> bool:
    """True when :func:`check_number` accepts ``value`` with these rules (for checking the items of a list
    whose message names the whole list)."""
    integer = integer or odd
    return _type_ok(value, integer) and _range_ok(int(value) if integer else float(value), gt, ge, lt, le, odd)


def check_number(name: str, value: Any, *, gt: Optional[float] = None, ge: Optional[float] = None,
                 lt: Optional[float] = None, le: Optional[float] = None, integer: bool = False, odd: bool = False,
                 hint: str = "", error: Type[Exception] = ValueError) -> Number:
    """Check one numeric argument and return it as ``int`` (``integer``/``odd``) or ``float``.

    Args:
        name: first words of the message: the argument's name, with the caller's prefix if it has
            one (``"simclr: temperature"``).
        value: the value given.
        gt / ge / lt / le: bounds (at most one low and one high).
        integer: the argument counts something (sizes, steps, iterations).
        odd: the argument must be an odd integer (kernel sizes); implies ``integer``.
        hint: appended to the rule, e.g. ``" (graph_size - 1)"``.
        error: the exception class raised (a ``ValueError`` subclass, e.g. ``EncoderArgumentError``).

    Returns:
        ``int(value)`` for integer arguments, else ``float(value)``.

    Raises:
        error: one line. Wrong type or not finite: the kind and the bounds (``proj_dim must be an
            integer >= 1, got 16.5``, ``temperature must be a finite number > 0, got nan``,
            ``momentum must be a finite number in [0, 1), got '0.99' (str)``). Out of range: the
            bounds (``temperature must be > 0, got -1.0``, ``kernel_size must be an odd integer >= 1,
            got 4``).
    """
    integer = integer or odd
    bounds = range_text(gt=gt, ge=ge, lt=lt, le=le)
    kind = ("an odd integer" if odd else "an integer") if integer else "a finite number"
    if not _type_ok(value, integer):
        raise error(f"{name} must be {' '.join(filter(None, (kind, bounds)))}{hint}, got {shown(value)}")
    out: Number = int(value) if integer else float(value)
    if not _range_ok(out, gt, ge, lt, le, odd):
        must = " ".join(filter(None, (kind, bounds))) if integer else bounds
        raise error(f"{name} must be {must}{hint}, got {shown(out)}")
    return out


def label_fraction_error(where: str, got: str) -> ValueError:
    """The one message of a label fraction, or a list of them, not in (0, 1] (:func:`check_label_fraction`;
    :func:`medfm.suite_protocols.parse_label_fractions` gives the whole list).

    Args:
        where: the argument or key, first in the message (``"label_fraction"``, ``"protocol.label_fractions"``).
        got: the refused value as the message shows it (:func:`shown`, a list's ``repr``).

    Returns:
        ``ValueError("<where> must be in (0, 1], got <got>")``, to raise.
    """
    return ValueError(f"{where} must be in (0, 1], got {got}")


def check_label_fraction(value: Any, where: str = "data.label_fraction") -> float:
    """One label fraction: a number in (0, 1] (``True``, NaN, ``"0.5"`` refused, not taken as 1 or as a number),
    in one wording whatever is wrong with it (:func:`label_fraction_error`). The rule of a training recipe's
    ``data.label_fraction`` (:class:`medfm.training.recipes.DataConfig`, and ``medfm pretrain``/``finetune``
    before their imports: :mod:`medfm.cli_checks`), of ``--label-fraction`` and a suite's
    ``protocol.label_fractions`` (:func:`medfm.suite_protocols.parse_label_fractions`, which re-exports this
    function), of :func:`medfm.evaluation.protocols.subset_indices`,
    :func:`medfm.evaluation.finetune_protocol.auto_epochs` and :func:`medfm.data.medmnist.label_fraction_indices`.

    Args:
        value: the value given.
        where: the argument or key, first in the message.

    Returns:
        the fraction as a float.

    Raises:
        ValueError: ``"data.label_fraction must be in (0, 1], got 1.5"``; ``got nan``, ``got True (bool)``,
            ``got '0.5' (str)`` (:func:`shown`).
    """
    if not number_fits(value, gt=0, le=1):
        raise label_fraction_error(where, shown(value))
    return float(value)


def check_bool(name: str, value: Any, *, note: str = "", error: Type[Exception] = ValueError) -> bool:
    """``value`` as a ``bool`` if it is one (Python's or numpy's): a switch given as ``"no"``,
    ``"false"`` or ``1`` is refused, never taken by its truth value (``bool("no")`` is True).

    Args:
        name: the argument's name as the message shows it (``input_skip``, ``frozen``).
        note: a parenthesis after ``true or false`` (``"hierarchical channel sampling"``).
        error: the exception class to raise.

    Raises:
        error: ``input_skip must be true or false, got 'yes' (str)``.
    """
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")):
        return bool(value)
    raise error(f"{name} must be true or false{f' ({note})' if note else ''}, got {shown(value)}")


def check_heads(dim: Any, heads: Any, *, dim_name: str = "dim", heads_name: str = "heads",
                error: Type[Exception] = ValueError) -> Tuple[int, int]:
    """Check an attention width and its head count: both integers >= 1, ``dim`` divisible by ``heads``
    (the heads split the width; torch's ``MultiheadAttention`` stops with a bare ``AssertionError``
    and a reshape by ``dim // heads`` fails or drops channels otherwise).

    Args:
        dim: the attention width given.
        heads: the head count given.
        dim_name / heads_name: their names in the message (``"num_heads"`` for an encoder layer).
        error: the exception class raised (a ``ValueError`` subclass, e.g. ``EncoderArgumentError``).

    Returns:
        ``(int(dim), int(heads))``.

    Raises:
        error: one line giving both values, the same for every failure (a bad ``dim``, a bad
            ``heads`` or one that does not divide ``dim``): ``dim must be divisible by heads (both
            integers >= 1: the attention heads split the width), got dim=64, heads=3``.
    """
    if not (number_fits(dim, ge=1, integer=True) and number_fits(heads, ge=1, integer=True)) or int(dim) % int(heads):
        raise error(f"{dim_name} must be divisible by {heads_name} (both integers >= 1: the attention heads split "
                    f"the width), got {dim_name}={shown(dim)}, {heads_name}={shown(heads)}")
    return int(dim), int(heads)


def check_list(name: str, value: Any, *, what: str, sequence: bool = False, got: Callable[[Any], str] = shown,
               error: Type[Exception] = ValueError) -> list:
    """``value`` as a list, for an argument that is a list of items (names, texts, targets): one string is
    refused, not iterated as its characters (``"abc"`` was read as the names ``a``, ``b``, ``c``), and so are
    bytes, a mapping (its keys), a set (no order) and anything not iterable. The items are not checked
    (:func:`check_string_list` checks strings).

    Args:
        name: the argument's name as the message shows it.
        value: the value given.
        what: what it must be, for the message (``"a list of modality names"``).
        sequence: only a list or a tuple (texts paired one to one with a batch; a generator is refused).
        got: how the message shows a refused value (default :func:`shown`; a type name for texts,
            which may be long).
        error: the exception class raised.

    Raises:
        error: ``modalities must be a list of modality names, got 'flair' (str)``.
    """
    if (isinstance(value, (str, bytes, bytearray, Mapping, Set)) or not isinstance(value, Iterable)
            or (sequence and not isinstance(value, (list, tuple)))):
        raise error(f"{name} must be {what}, got {got(value)}")
    try:
        return list(value)
    except TypeError:  # a 0-d numpy array has __iter__ but cannot be iterated
        raise error(f"{name} must be {what}, got {got(value)}") from None


def check_string_list(name: str, value: Any, *, what: str = "a list of strings", integers: bool = False,
                      sequence: bool = False, got: Callable[[Any], str] = shown,
                      error: Type[Exception] = ValueError) -> List[str]:
    """``value`` as a list of ``str``: the rule of :func:`check_list` (no single string, bytes, mapping,
    set or non-iterable) and every item a string.

    Args:
        name / what / sequence / got / error: as in :func:`check_list`.
        integers: integer items are accepted too and returned as strings (names that YAML reads as
            numbers: ``label_names: [0, 1]``); other items (None, floats, lists) are refused, not turned
            into ``"None"``.

    Returns:
        the items as a new list of ``str``.

    Raises:
        error: ``label_names must be a list of 2 names, one per class, got 'ab' (str)`` (the container),
            ``questions must be a list of strings, one per image, got [1, 2]`` (an item; the whole list shown).
    """
    items = check_list(name, value, what=what, sequence=sequence, got=got, error=error)
    if not all(isinstance(v, str) or (integers and is_integer(v)) for v in items):
        raise error(f"{name} must be {what}, got {shown(items)}")
    return [str(v) for v in items]


def check_mapping_list(name: str, value: Any, *, what: str, error: Type[Exception] = TypeError) -> list:
    """``value`` as a list of mappings (log records, table rows): the rule of :func:`check_list` (one record, a
    string, a set or anything not iterable is refused) and every item a mapping. Values are shown by type only
    (a record, or a log read as text, may be long).

    Args:
        name / what / error: as in :func:`check_list`.

    Returns:
        the items as a new list.

    Raises:
        error: ``rows must be a list of log records (...), got dict`` (the container),
            ``..., got str at index 0`` (the first item that is no mapping).
    """
    items = check_list(name, value, what=what, got=lambda v: type(v).__name__, error=error)
    bad = next((i for i, item in enumerate(items) if not isinstance(item, Mapping)), None)
    if bad is not None:
        raise error(f"{name} must be {what}, got {type(items[bad]).__name__} at index {bad}")
    return items


def _tensor_shown(value: Any) -> str:
    """A refused tensor argument as a message shows it: ``a torch.float32 tensor of shape (2,)``, or
    :func:`shown` for a value that is no tensor."""
    if _is_tensor(value):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return shown(value)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor given means torch is imported; never imported here
    return torch is not None and isinstance(value, torch.Tensor)


def is_index_tensor(value: Any) -> bool:
    """True for a torch tensor of an integer dtype: indices (per-sample domains, modality indices). A bool
    tensor (a mask: True/False would be taken as 1/0), a float one (``0.5`` truncated to 0) and a complex
    one (its imaginary part dropped) are no indices. Reads no value back."""
    return _is_tensor(value) and not (value.dtype.is_floating_point or value.dtype.is_complex
                                      or value.dtype == sys.modules["torch"].bool)


def _float_values_shown(value: Any) -> str:
    """`` holding [0.5, 2.0]``: up to 5 values of a refused float mask other than 0 and 1 (sorted, read back here,
    on the error path only); ``""`` for no float tensor or one of 0.0 and 1.0 only."""
    if not (_is_tensor(value) and value.dtype.is_floating_point):
        return ""
    bad = value[(value != 0) & (value != 1)]
    nan = bad.isnan()
    shown_values = bad[~nan].unique().tolist() + ([math.nan] if bool(nan.any()) else [])  # (sorted, one NaN last)
    return f" holding {shown_values[:5]}" if shown_values else ""


def check_mask_tensor(name: str, value: Any, *, what: str = "(B,) bool", ndim: Optional[int] = None,
                      error: Type[Exception] = ValueError) -> Any:
    """``value`` as a bool mask tensor: a bool tensor as it is; an integer one that holds only 0 and 1
    (transformers' int64 ``attention_mask``) as ``value.bool()``.

    A float mask is refused (``0.5`` was taken as True: a soft or probability mask is no mask), and so
    is an integer other than 0 and 1 (``2`` was taken as True) and a complex one. A bool mask is taken
    without reading a value back; an integer one reads back once (its 0/1 check); a refused float one is read
    back on the error path only, to name up to 5 of its values other than 0 and 1 (sorted; NaN included).

    Args:
        name: the argument's name as the message shows it (``q_mask``, ``the presence mask of 'pre'``).
        value: the value given.
        what: what it must be, for the message (``"(B, L) bool"``).
        ndim: the number of dimensions it must have (None: any).
        error: the exception class raised.

    Returns:
        the mask as a bool tensor (the same tensor when it is bool already).

    Raises:
        error: ``q_mask must be (B, L) bool, got a torch.float32 tensor of shape (2,) holding [0.5, 2.0]``
            (``... of shape (2,)`` alone for a float mask of 0.0 and 1.0 only);
            ``q_mask must be (B, L) bool, got integer values [2] (an integer mask holds only 0 and 1)``.
    """
    if (not _is_tensor(value) or value.dtype.is_floating_point or value.dtype.is_complex
            or (ndim is not None and value.ndim != ndim)):
        raise error(f"{name} must be {what}, got {_tensor_shown(value)}{_float_values_shown(value)}")
    if value.dtype == sys.modules["torch"].bool:
        return value
    bad = (value != 0) & (value != 1)
    if bool(bad.any()):
        raise error(f"{name} must be {what}, got integer values {sorted(set(value[bad].tolist()))[:5]} "
                    "(an integer mask holds only 0 and 1)")
    return value.bool()


__all__ = ["check_bool", "check_heads", "check_label_fraction", "check_list", "check_mapping_list", "check_mask_tensor",
           "check_number", "check_string_list", "is_finite_number", "is_index_tensor", "is_integer",
           "label_fraction_error", "number_fits", "range_text", "shown"]
