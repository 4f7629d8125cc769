"""One small registry class; one instance per kind of thing (encoders, objectives, ...).

Follows timm's model registry in spirit: builders register with a decorator, names
are unique (a duplicate raises, it never silently overrides), and an unknown name is
answered with close matches ("did you mean ...").
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not hold.

    The message names the registry, the unknown name and the closest registered names.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownArgumentError(TypeError, ValueError):
    """Raised when :meth:`Registry.build` is given a keyword its builder does not take.

    A ``TypeError`` (what Python raises for an unexpected keyword) and a ``ValueError`` (what
    callers such as the ``medfm`` CLI catch for bad user input). The message names the
    registry, the entry, the unknown keyword and the closest valid keyword.
    """


def keyword_parameters(fn: Callable[..., Any]) -> Tuple[List[str], bool]:
    """The keyword names ``fn`` accepts (a class: its ``__init__``, without ``self``) and whether it
    takes ``**kwargs``. A callable without a signature (a builtin) counts as taking anything."""
    target = fn.__init__ if isinstance(fn, type) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return [], True
    names = [n for n, p in params.items() if n != "self"
             and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def close_matches(key: Any, valid: Sequence[str], *, n: int = 1, cutoff: float = 0.5) -> List[str]:
    """Up to ``n`` names of ``valid`` that ``key`` looks like a mistyping of, best first, ignoring case: first the
    names equal to ``key`` but for case (``'TEST'``: ``'test'``), then those of :func:`difflib.get_close_matches`
    with ``cutoff`` on the names as written or, when that finds none, on case-folded names (``'RESNT18'``:
    ``'resnet18'``). Each name once (``valid`` may repeat one). A key and names in one case get what
    ``get_close_matches`` alone gives. The rule of :func:`close_match_hint` and
    :func:`medfm.data.multimodal.close_modality`."""
    valid, key = list(dict.fromkeys(str(v) for v in valid)), str(key)
    close = difflib.get_close_matches(key, valid, n=n, cutoff=cutoff)
    if not close:
        folded: Dict[str, str] = {}
        for v in valid:  # a folded name stands for its first spelling in valid
            folded.setdefault(v.casefold(), v)
        close = [folded[f] for f in difflib.get_close_matches(key.casefold(), list(folded), n=n, cutoff=cutoff)]
    return list(dict.fromkeys([v for v in valid if v.casefold() == key.casefold()] + close))[:n]


def close_match_hint(key: Any, valid: Sequence[str], *, n: int = 1, cutoff: float = 0.5,
                     fallback: Optional[str] = "valid") -> str:
    """The hint after an "unknown name" error: ``"; did you mean 'x'?"`` (up to ``n`` close matches of
    ``key`` among ``valid`` by :func:`close_matches`, which ignores case, joined by " or "), else
    ``" (<fallback>: a, b)"`` listing ``valid``, or ``""`` when ``fallback`` is None. Only the hint ignores
    case: the lookups that call it do not.

    The one rule behind every "did you mean" in medfm (registries, recipe keys, data sets, corruptions,
    protocols, fusers, ...), e.g. ``f"unknown corruption {name!r}{close_match_hint(name, names)}"``.
    """
    close = close_matches(key, valid, n=n, cutoff=cutoff)
    if close:
        return f"; did you mean {' or '.join(map(repr, close))}?"
    return f" ({fallback}: {', '.join(str(v) for v in valid) or 'none'})" if fallback is not None else ""


class Registry:
    """A named mapping from string keys to builder callables.

    Args:
        kind: what the registry holds, used in error messages ("encoder", "objective").
        lister: the public call that lists the names (``"medfm.list_encoders()"``), which an
            unknown-name error points to when there are too many names to print (more than 12).
        modules: modules whose import registers the entries; imported on first lookup so
            that ``ENCODERS.get(...)`` works whatever was imported before.

    Raises:
        ValueError: on registering a name twice or an empty name.
        UnknownNameError: on ``get`` of a name that is not registered.
        UnknownArgumentError: on ``build`` with a keyword the builder does not take.
    """

    def __init__(self, kind: str, modules: Sequence[str] = (), lister: Optional[str] = None) -> None:
        self.kind = kind
        self.lister = lister
        self._modules = tuple(modules)
        self._populated = not self._modules
        self._entries: Dict[str, Callable[..., Any]] = {}
        self._tags: Dict[str, Dict[str, Any]] = {}

    def _populate(self) -> None:
        if not self._populated:
            self._populated = True
            for mod in self._modules:
                importlib.import_module(mod)

    def register(self, name: Optional[str] = None, **tags: Any) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name`` (default: the function's name).

        Extra keyword ``tags`` (e.g. ``family="cnn"``) are stored and searchable with
        :meth:`names` ``(family="cnn")``.
        """

        def deco(fn: F) -> F:
            key = name or fn.__name__
            if not key:
                raise ValueError(f"{self.kind} registry: empty name")
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = fn
            self._tags[key] = dict(tags)
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        """Return the builder registered as ``name``.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists close matches.
        """
        self._populate()
        if name in self._entries:
            return self._entries[name]
        hint = close_match_hint(name, list(self._entries), n=3, fallback=None)
        names = sorted(self._entries)
        if len(names) <= 12 or not self.lister:
            known = ", ".join(names)
        else:
            known = f"{len(names)}; {self.lister} lists them"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})")

    def tags(self, name: str) -> Dict[str, Any]:
        """The tags given at registration for ``name``."""
        self.get(name)
        return dict(self._tags[name])

    def names(self, pattern: str = "*", **tags: Any) -> List[str]:
        """Sorted registered names matching a glob ``pattern`` and all given ``tags``."""
        self._populate()
        out = []
        for key in sorted(self._entries):
            if not fnmatch.fnmatch(key, pattern):
                continue
            if any(self._tags[key].get(k) != v for k, v in tags.items()):
                continue
            out.append(key)
        return out

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the builder for ``name`` with ``kwargs``, dropping ``None`` values.

        Dropping ``None`` lets CLI flags that were not given pass straight through. The
        remaining keys are checked against the builder's signature first, unless the builder
        takes ``**kwargs`` (e.g. to pass them on to timm), which then sees every key.

        Raises:
            UnknownNameError: ``name`` is not registered (with close matches).
            UnknownArgumentError: a keyword the builder does not take (with the closest valid one).
        """
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return self.check_keywords(name, kwargs)(**kwargs)

    def check_keywords(self, name: str, kwargs: Dict[str, Any]) -> Callable[..., Any]:
        """The builder for ``name``, once every key of ``kwargs`` is a keyword it takes (any key when
        it takes ``**kwargs``); :meth:`build` and checks that build nothing (a recipe's text encoder
        spec) share it.

        Raises:
            UnknownNameError: ``name`` is not registered (with close matches).
            UnknownArgumentError: a keyword the builder does not take (with the closest valid one).
        """
        builder = self.get(name)
        valid, takes_any = keyword_parameters(builder)
        for key in kwargs:
            if key not in valid and not takes_any:
                raise UnknownArgumentError(
                    f"{self.kind} {name!r} got an unexpected keyword argument {key!r}{close_match_hint(key, valid)}"
                )
        return builder

    def __contains__(self, name: object) -> bool:
        self._populate()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._populate()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


ENCODERS = Registry("encoder", modules=["medfm.encoders"], lister="medfm.list_encoders()")
OBJECTIVES = Registry("objective", modules=["medfm.objectives"])
ADAPTERS = Registry("adapter", modules=["medfm.adapters"])
TEXT_ENCODERS = Registry("text encoder", modules=["medfm.text"])
FUSERS = Registry("fuser", modules=["medfm.adapters"])


#: what ``medfm bench`` and the benchmark scripts time: why :func:`require_2d_encoder` refuses a 3D encoder
BENCH_TAKES = "these benchmarks time 2D encoders on (B, C, H, W) images"


def require_2d_encoder(name: str, registry: Optional[Registry] = None) -> None:
    """Refuse ``name`` unless it is a registered 2D encoder (its ``dims`` tag, 2 when untagged): the rule of
    :func:`medfm.benchmark.require_2d_encoders` (the benchmarks feed ``(B, C, H, W)`` images), which ``medfm bench``
    applies before torch is imported to a registry of names and tags only (:mod:`medfm.cli_checks`). Torch-free:
    it looks at tags, and only ``registry``'s (default :data:`ENCODERS`, which imports the encoders).

    Raises:
        UnknownNameError: an unregistered name, with close matches (:meth:`Registry.tags`).
        ValueError: ``"'resnet3d_18' is a 3D encoder; these benchmarks time 2D encoders on (B, C, H, W) images"``.
    """
    dims = (ENCODERS if registry is None else registry).tags(name).get("dims", 2)
    if dims != 2:
        raise ValueError(f"{name!r} is a {dims}D encoder; {BENCH_TAKES}")
