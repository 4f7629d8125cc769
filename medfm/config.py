"""Loading nested dataclass configs from YAML/dicts with strict key checking.

A misspelt key is answered with one clear line naming the section and the closest valid
key ("did you mean"), as MONAI does for option strings.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple, Type, TypeVar, Union

import yaml

from medfm.arg_checks import check_bool, shown
from medfm.registry import UnknownNameError, close_match_hint, keyword_parameters

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or config has an unknown key, a wrong type or an invalid value."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def section_owners(cls: type, key: str) -> Tuple[str, ...]:
    """The sections of dataclass ``cls`` (fields whose type is a dataclass, or ``Optional`` of one), in field
    order, whose dataclass has a field ``key``: ``section_owners(FinetuneRecipe, "lr") == ("train",)``. A mapping
    or list of sections (``FusionRecipe.models``, ``TextSegRecipe.tasks``) is not one: its key goes in an entry."""
    hints = typing.get_type_hints(cls)
    owners = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        options = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
        section = next((tp for tp in options if _is_dataclass_type(tp)), None)
        if section is not None and key in {g.name for g in dataclasses.fields(section)}:
            owners.append(f.name)
    return tuple(owners)


def unknown_key_hint(cls: type, key: Any, valid: typing.Sequence[str]) -> str:
    """The hint after ``unknown key 'lr'`` in dataclass ``cls`` whose accepted keys are ``valid``: a setting of one
    of its sections among ``valid`` is told where it belongs (``"; it is a train setting: write train: {lr: ...}"``;
    a close match would mislead: ``lr`` looks like ``lora``), anything else gets the close match
    (:func:`medfm.registry.close_match_hint`, ``"; did you mean 'mode'?"``, else ``" (valid keys: ...)"``).
    The one rule of :func:`from_dict` and of a suite's ``protocol.finetune``
    (:func:`medfm.suite_protocols.check_finetune_keys`)."""
    settable = [s for s in section_owners(cls, key) if s in valid] if isinstance(key, str) else []
    if not settable:
        return close_match_hint(key, valid, fallback="valid keys")
    return f"; it is {a_setting_of(settable)}: write " + " or ".join(f"{s}: {{{key}: ...}}" for s in settable)


def a_setting_of(sections: typing.Sequence[str]) -> str:
    """``"a train setting"``, ``"an augment or lora setting"``: the words for a key of the named sections."""
    return f"{'an' if sections[0][0] in 'aeiou' else 'a'} {' or '.join(sections)} setting"


def from_dict(cls: Type[T], data: Dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclass fields.

    Values are checked against the field's type hint (``int``, ``float``, ``bool``, ``str``,
    ``Optional``/``Union``, lists/tuples of those, mappings, nested dataclasses).

    Raises:
        ConfigError: unknown keys (with close matches), a missing required key, a value of the wrong
            type (:func:`check_value_type`: ``r.yaml.train.epochs must be an integer, got 'ten' (str)``), a
            section that is not a mapping, or a value rejected by the dataclass's ``__post_init__`` (its
            location once: ``r.yaml: data.scale must be in (0, 4], got 9``, see :func:`_located`).

    The returned dataclass records ``where`` for :func:`recipe_location`, and so do its dataclass
    sections the recipe left out (``where.<name>``, made by the field's default).
    """
    where = where or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _type_error(data, cls, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: Dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{unknown_key_hint(cls, key, list(fields))}")
        kwargs[key] = check_value_type(value, hints.get(key, Any), f"{where}.{key}")
    missing = [name for name, f in fields.items() if f.init and name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:  # the dataclass would say "__init__() missing 1 required positional argument"
        raise ConfigError(f"{where}: missing required key(s) {', '.join(repr(m) for m in missing)}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:  # a ConfigError too: one from a from_dict in __post_init__ is relative
        raise ConfigError(_located(where, str(err))) from None
    _record_where(obj, where)
    return obj


#: attribute where :func:`from_dict` records the location of a section it built
_WHERE = "_medfm_recipe_where"


def _record_where(section: Any, where: str) -> None:
    """Record ``where`` on dataclass ``section`` for :func:`recipe_location`, and on each of its dataclass
    sections that the recipe left out (made by the field's default, not by :func:`from_dict`), so that an
    error about an omitted section names the file too (``r.yaml.encoder: ...``, not ``encoder: ...``)."""
    try:  # the dataclass's fields (to_dict, ==) do not see it
        object.__setattr__(section, _WHERE, where)
    except AttributeError:  # a dataclass with __slots__
        return
    for f in dataclasses.fields(section):
        value = getattr(section, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and not hasattr(value, _WHERE):
            _record_where(value, f"{where}.{f.name}")


def _located(where: str, message: str, marks: str = ".: ") -> str:
    """``message`` (raised by the dataclass at ``where``, e.g. ``"r.yaml.data"``) with its location once.

    The recipe dataclasses name their own keys (``"data.scale must be in (0, 4], got 9"``): a message
    starting with the section's name (the last part of ``where``) followed by one of ``marks`` gets the
    parent's location (``"r.yaml: data.scale ..."``, not ``"r.yaml.data: data.scale ..."``); any other
    gets ``where``.
    """
    head, _, section = where.rpartition(".")
    if head and message.startswith(section) and message[len(section):len(section) + 1] in marks:
        return f"{head}: {message}"
    return f"{where}: {message}"


def recipe_location(section: Any, default: str) -> str:
    """Where recipe ``section`` (a dataclass) came from: ``"r.yaml.encoder"`` when :func:`from_dict`
    built it from a recipe file, else ``default`` (e.g. ``"encoder"`` for a recipe made in Python)."""
    return getattr(section, _WHERE, None) or default


def mapping_location(recipe: Any, key: str) -> str:
    """Recipe location of ``recipe``'s plain-mapping section ``key`` (``decoder``, ``models.<label>``):
    ``"r.yaml.decoder"`` for a recipe read from ``r.yaml``, else ``key`` (a mapping cannot record its
    own location, :func:`recipe_location`)."""
    where = recipe_location(recipe, "")
    return f"{where}.{key}" if where else key


def located_error(err: Exception, where: str) -> Exception:
    """``err`` again, of its own class, with recipe location ``where`` put first once, for an error whose
    class callers catch (:class:`medfm.registry.UnknownNameError`, ``medfm.hub.CheckpointError``):
    ``"r.yaml.encoder.pretrained: no checkpoint directory at ..."``. A message that names one of the
    section's keys (``"image_encoder.args must be ..."`` at ``"r.yaml.image_encoder"``) gets the parent's
    location (``"r.yaml: image_encoder.args ..."``), as in :func:`recipe_args_errors`. Raise it ``from None``;
    for classes built from one message (every medfm error).
    """
    return type(err)(_located(where, str(err), marks="."))


@contextmanager
def recipe_args_errors(where: str) -> Iterator[None]:
    """Name the recipe location ``where`` (e.g. ``"p.yaml.objective.args"``) in a bad-value error of a
    component built from recipe ``args``.

    Wrap only the build or check of that component (encoder, objective, adapter, fuser): its
    constructor's own checks raise one line (``"simclr: temperature must be > 0, got -1.0"``), which
    becomes ``"p.yaml.objective.args: simclr: temperature must be > 0, got -1.0"``; a message that names
    one of the section's keys (``"image_encoder.args must be a mapping ..."``) gets the location once, as in
    :func:`from_dict` (``"r.yaml: image_encoder.args must be a mapping ..."``).

    Raises:
        ConfigError: for a ``ValueError`` or ``TypeError`` raised inside (a ``ConfigError``, which
            carries its own location, passes unchanged; so does any other exception but the next).
        UnknownNameError: an unregistered name (encoder, fuser, text encoder) looked up inside, its
            class kept and ``where`` put first (``r.yaml.encoder: unknown encoder 'resnet19'; did you mean ...``).
    """
    try:
        yield
    except ConfigError:
        raise
    except UnknownNameError as err:
        raise located_error(err, where) from None
    except (TypeError, ValueError) as err:  # only "<section>.key ...": "encoder 'x' does not take ..." keeps where
        raise ConfigError(_located(where, str(err), marks=".")) from None


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
#: the YAML values each scalar hint accepts (ints where floats are expected; bools only for bool)
_SCALARS = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
_PLURAL_NAMES = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _describe(tp: Any, from_file: bool = False) -> str:
    """Readable name of a type hint for error messages ("an integer", "a list of numbers"). A dataclass section
    is "a mapping of its settings" in a recipe file (its Python class name means nothing in YAML), "an
    EncoderConfig or a mapping of its settings" for a value given in Python."""
    if tp in _TYPE_NAMES:
        return _TYPE_NAMES[tp]
    if _is_dataclass_type(tp):
        if from_file:
            return "a mapping of its settings"
        return f"{'an' if tp.__name__[0] in 'AEIOU' else 'a'} {tp.__name__} or a mapping of its settings"
    if typing.get_origin(tp) is dict or tp is dict:
        return "a mapping"
    if typing.get_origin(tp) in (list, tuple) or tp in (list, tuple):
        inner = {a for a in typing.get_args(tp) if a is not Ellipsis}
        plural = _PLURAL_NAMES.get(next(iter(inner))) if len(inner) == 1 else None
        return "a list" + (f" of {plural}" if plural else "")
    if typing.get_origin(tp) is Union:
        return " or ".join(_describe(a, from_file) if a is not type(None) else "null" for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _type_error(value: Any, tp: Any, name: str, kind: str = "", from_file: bool = False) -> ConfigError:
    """The one message of a recipe value of the wrong type: ``data.verify_md5 must be true or false, got 'no'
    (str)`` (the words of :func:`medfm.arg_checks.check_bool`; the value as :func:`medfm.arg_checks.shown` shows
    it, cut to 60 characters); the type as :func:`_describe` says it (``from_file``: a value read from a file)."""
    text = shown(value)
    if len(text) > 60:
        text = text[:57] + "..." + ("" if isinstance(value, (list, tuple)) else f" ({type(value).__name__})")
    return ConfigError(f"{name} must be {kind or _describe(tp, from_file)}, got {text}")


def check_value_type(value: Any, tp: Any, name: str, *, from_file: bool = True, where: str = "") -> Any:
    """``value`` checked against the type hint ``tp``: the one type rule of a recipe value, read from a recipe
    file (:func:`from_dict`, :func:`check_call_args`) or given in Python (:func:`check_field_types`), in one
    wording (:func:`_type_error`).

    Ints are accepted where floats are expected; ``bool`` is never taken for a number, nor ``"no"`` or ``1``
    for a ``bool``. A dataclass section is an instance of it or a mapping of its settings, built by
    :func:`from_dict` (unknown keys with "did you mean"); lists are made tuples where the hint is a tuple.
    Hints this checker does not know (``Any``, classes) accept any value.

    Args:
        value: the value given.
        tp: the field's or parameter's type hint.
        name: its location, first in a message (``"r.yaml.data.verify_md5"``, ``"data.verify_md5"``).
        from_file: read from a recipe file: an empty YAML section (``decoder:``, null) means its defaults (no
            entries for a mapping), and the items of lists are checked too (``r.yaml.modalities[0] must be a
            string, got 1``). ``False`` (a value given in Python): ``None`` is no section (``lora=None`` was
            taken as the defaults), and list items are left to the dataclass's own checks (they know the rule).
        where: the location a dataclass section built from a mapping records (:func:`from_dict`; default ``name``).

    Returns:
        the value (a dataclass section built from its mapping; a list made a tuple for a tuple hint).

    Raises:
        ConfigError: ``value`` does not fit ``tp``: ``r.yaml.train.epochs must be an integer, got 'ten' (str)``,
            ``r.yaml.encoder must be a mapping of its settings, got 'resnet18' (str)`` (in a file; given in
            Python: ``encoder must be an EncoderConfig or a mapping of its settings, ...``),
            ``r.yaml.patch must be a list of 2 values, got [8, 8, 8]``; or a bad mapping section (:func:`from_dict`),
            also an entry of a mapping of sections read from a file (``r.yaml.models.a must be a mapping of its
            settings, got 5``; given in Python, the dataclass owning it checks its entries: ``FusionRecipe``).
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        for option in options:
            try:
                return check_value_type(value, option, name, from_file=from_file, where=where)
            except ConfigError as err:
                last = err
        raise last if len(options) == 1 else _type_error(value, tp, name, from_file=from_file)
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict) or (value is None and from_file):  # an empty YAML section means all defaults
            return from_dict(tp, value, where or name)
        raise _type_error(value, tp, name, from_file=from_file)
    if tp is bool:
        return check_bool(name, value, error=ConfigError)
    if tp in _SCALARS:
        if not isinstance(value, _SCALARS[tp]) or isinstance(value, bool):
            raise _type_error(value, tp, name)
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, tp, name)
        if not from_file:
            return value
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # Tuple[X, Y]: fixed length
            if len(value) != len(args):
                raise _type_error(value, tp, name, kind=f"a list of {len(args)} values")
            items = [check_value_type(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            elem = args[0] if args else Any
            # elements that are dataclasses are built by the parent's __post_init__ (it knows their context)
            items = [v if _is_dataclass_type(elem) and isinstance(v, dict)
                     else check_value_type(v, elem, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if value is None and from_file:  # an empty YAML section (``decoder:``) means no entries
            return {}
        if not isinstance(value, dict):
            raise _type_error(value, tp, name)
        sections = typing.get_args(tp)[1:]  # a mapping of dataclass sections (FusionRecipe.models): each built here
        if from_file and sections and _is_dataclass_type(sections[0]):  # in a file's words; in Python: the owner's
            return {k: check_value_type(v, sections[0], f"{name}.{k}") for k, v in value.items()}
        return value
    return value


def check_field_types(section: Any, prefix: str = "") -> None:
    """Give recipe dataclass ``section`` made in Python the type rule :func:`from_dict` applies to a recipe
    file, before its ``__post_init__`` uses its values (a recipe read from a file passes unchanged: its values
    were checked against the same hints): :func:`check_value_type` with ``from_file=False``, field by field,
    in its words (``data.verify_md5 must be true or false, got 'no' (str)`` here, ``r.yaml.data.verify_md5
    must be ...`` in a file).

    ``None`` passes where the hint is ``Optional``; a dataclass section given as a mapping is built with
    :func:`from_dict` and put in its place (its location ``"<Class>.<field>"``: ``FinetuneRecipe.augment:
    unknown key 'crop'``); a ``bool`` is a ``bool`` (``verify_md5="no"`` verified, ``question_only="no"``
    zeroed the image tokens); a list is a list or tuple (a string was split into its letters:
    ``modalities="flair"``). Numbers (and hints of several types) are left to the dataclass's own
    :func:`medfm.arg_checks.check_number` (it knows their bounds: ``data.size must be an integer >= 1 ...``),
    and so are the items of lists.

    Args:
        section: the dataclass instance (``self`` in its ``__post_init__``).
        prefix: what its messages put before a field's name (``"data."``; ``""`` for a whole recipe).

    Raises:
        ConfigError: (a ``ValueError``) one line naming the field, e.g. ``data.verify_md5 must be true or false,
            got 'no' (str)``, ``encoder must be an EncoderConfig or a mapping of its settings, got 'resnet18'
            (str)``; or a bad mapping section (``FinetuneRecipe: data.dataset: unknown MedMNIST data set ...``).
    """
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value, hint = getattr(section, f.name), hints.get(f.name, Any)
        options = typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,)
        kinds = [a for a in options if a is not type(None)]
        if len(kinds) != 1 or kinds[0] in (int, float):
            continue
        checked = check_value_type(value, hint, prefix + f.name, from_file=False,
                                   where=f"{type(section).__name__}.{f.name}")
        if checked is not value:
            setattr(section, f.name, checked)


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: ``1e-3`` is a float, not a string."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$""", re.X),
    list("-+0123456789"),
)


def parse_recipe_yaml(text: str) -> Any:
    """YAML text read as recipes are: PyYAML's safe loader, with YAML 1.2 floats (``1e-3`` is a float).

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 (a SafeLoader)


def load_yaml(path: Union[str, Path], what: str = "recipe") -> Dict[str, Any]:
    """Read a YAML mapping.

    Args:
        path: the file.
        what: what the file is, as the errors name it (``"recipe"``; ``"suite"`` for an evaluation suite).

    Raises:
        ConfigError: missing file, a directory, an unreadable or non-UTF-8 file, YAML syntax
            error, a top level that is not a mapping (``"s.yaml: a suite must be a YAML mapping"``),
            or an empty file or mapping (nothing but blanks/comments, or ``{}``: ``"recipe r.yaml is
            empty: ..."``; an empty recipe used to start a run of all the defaults, e.g. a 10-epoch
            pretraining, as if it were meant; no subcommand documents an empty file as "the defaults").
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; pass a {what} file (.yaml) inside it")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # a binary file, or one saved in another encoding
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {err.start}: {err.reason}); "
                          f"a {what} is YAML text") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        data = parse_recipe_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if data is None or data == {}:
        found = "only blanks or comments" if data is None else "an empty mapping `{}`"
        raise ConfigError(f"{what} {path} is empty: it holds {found}, so it sets nothing; "
                          f"pass the {what} file you meant")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a YAML mapping")
    return data


def with_overrides(data: Dict[str, Any], overrides: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """``data`` (a recipe mapping) with command-line overrides merged into its sections.

    ``None`` values are skipped (the option was not given). A section that is missing or empty
    (``train:``) becomes a mapping of the overrides; a section that is not a mapping is left as
    it is, for :func:`from_dict` to report (``r.yaml.train must be a mapping of its settings, got [1]``).

    Args:
        data: the mapping read by :func:`load_yaml` (not modified).
        overrides: ``{section: {key: value or None}}``, e.g. ``{"train": {"epochs": 2}}``.

    Returns:
        A new top-level mapping.
    """
    out = dict(data)
    for section, values in overrides.items():
        values = {k: v for k, v in values.items() if v is not None}
        current = out.get(section)
        if not values or not (current is None or isinstance(current, dict)):
            continue
        out[section] = {**(current or {}), **values}
    return out


def check_call_args(fn: Any, args: Dict[str, Any], where: str, provided: Tuple[str, ...] = ()) -> None:
    """Check recipe ``args`` against the keyword parameters of a registered builder ``fn``.

    Unknown keys are answered with the closest parameter name, and values of annotated
    parameters are type-checked as in :func:`from_dict`. A builder taking ``**kwargs``
    (e.g. one passing them on to timm) accepts any key; its known parameters are still checked.

    Args:
        fn: a function or class (its ``__init__`` is inspected).
        args: the recipe's ``args`` mapping.
        where: location for messages, e.g. ``"pt.yaml.objective.args"``.
        provided: parameters the caller fills itself (e.g. ``("encoder",)``); not valid in ``args``.

    Raises:
        ConfigError: an unknown or caller-provided key, or a value of the wrong type.
    """
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that do not resolve at run time: check names only
        hints = {}
    names, takes_any = keyword_parameters(fn)
    names = [n for n in names if n not in provided]
    for key, value in args.items():
        if key in provided:
            raise ConfigError(f"{where}: {key!r} is set by medfm, not by the recipe")
        if key not in names:
            if takes_any:
                continue
            raise ConfigError(f"{where}: unknown argument {key!r}{close_match_hint(key, names)}")
        if value is not None and key in hints:
            check_value_type(value, hints[key], f"{where}.{key}")


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain dicts/lists, ready for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj: Any) -> str:
    """YAML text of a (nested) dataclass or dict."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
