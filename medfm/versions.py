"""The installed versions a result or a checkpoint records, for provenance, and the header every
``results.json`` starts with (:func:`result_header`).

The same checkpoint's linear-probe score moved by one test image between two installs, and the same CLIP
pretraining recipe trained other weights on another install (docs/ssl_results.md, "Re-run at f0b71d1"), so every
``results.json`` and every checkpoint's ``config.json`` says what computed it. Torch-free: the distributions are
read from their metadata (:mod:`importlib.metadata`), never imported.
"""
from __future__ import annotations

import platform
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["NUMERIC_DISTRIBUTIONS", "RESULT_HEADER_KEYS", "versions", "versions_text", "version_changes",
           "result_header", "provenance_text"]

#: installed distributions whose numerics a result depends on, besides torch: the linear probe's solver
#: (scikit-learn, scipy) and the text encoders (transformers); read from their metadata, never imported
NUMERIC_DISTRIBUTIONS = ("torch", "scikit-learn", "scipy", "transformers")
#: the keys :func:`result_header` writes first into every ``results.json``, in this order
RESULT_HEADER_KEYS = ("schema_version", "kind", "created", "versions")


def versions() -> Dict[str, Optional[str]]:
    """Versions of medfm, numpy, Python and :data:`NUMERIC_DISTRIBUTIONS`, as installed.

    Returns:
        ``{"medfm": str, "numpy": str, "python": str, "torch": str | None, "scikit-learn": ..., "scipy": ...,
        "transformers": ...}``; a distribution that is not installed is ``None``. None of them is imported
        (numpy is, by medfm itself). About 4.4 ms per call once medfm is imported (mean of 20 calls).
    """
    from importlib import metadata

    import numpy as np

    import medfm

    found: Dict[str, Optional[str]] = {}
    for name in NUMERIC_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"medfm": medfm.__version__, "numpy": np.__version__, "python": platform.python_version(), **found}


def versions_text(found: Mapping[str, Optional[str]]) -> str:
    """``found`` (a result's or a checkpoint's ``"versions"``, :func:`versions`) as report text: ``"medfm 0.1.0,
    torch 2.14.1, scikit-learn 1.9.1, ..."`` in :func:`versions`' order, leaving out Python, numpy and what was not
    installed or not recorded (an older result)."""
    names = ("medfm",) + NUMERIC_DISTRIBUTIONS
    return ", ".join(f"{name} {found[name]}" for name in names if found.get(name))


def version_changes(recorded: Any) -> Dict[str, Tuple[str, Optional[str]]]:
    """What is installed now that differs from ``recorded`` (a checkpoint's or a result's ``"versions"``).

    Returns:
        ``{name: (recorded version, installed version or None)}`` for each name :func:`versions` gives that
        ``recorded`` holds with another value, in :func:`versions`' order; ``{}`` when ``recorded`` is not a mapping
        (a checkpoint written before versions were recorded: nothing to compare) or nothing changed. A name
        ``recorded`` lacks or holds as ``None`` is not compared.
    """
    if not isinstance(recorded, Mapping):
        return {}
    now = versions()
    return {name: (str(recorded[name]), now[name]) for name in now
            if recorded.get(name) is not None and str(recorded[name]) != now[name]}


def result_header(kind: str, schema_version: int = 1) -> Dict[str, Any]:
    """The keys every medfm ``results.json`` starts with, so that a result says what it is, when and with what it
    was computed: the classification report, evaluation suites, VQA, segmentation and fusion runs all write it.

    Args:
        kind: what the result is (``"classification"``, ``"evaluation-suite"``, ``"vqa"``, ``"segmentation"``,
            ``"text_segmentation"``, ``"fusion"``, ``"fusion_segmentation"``); readers tell reports apart by it
            (:func:`medfm.evaluation.report.start_report_dir`).
        schema_version: the version of that kind's schema.

    Returns:
        ``{"schema_version": int, "kind": str, "created": ISO-8601 UTC timestamp to the second,
        "versions": versions()}`` (:data:`RESULT_HEADER_KEYS`).

    Raises:
        ValueError: ``kind`` not a non-empty string, or ``schema_version`` not a positive int.
    """
    from datetime import datetime, timezone

    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a result's kind must be a non-empty string, got {kind!r}")
    if isinstance(schema_version, bool) or not isinstance(schema_version, int) or schema_version < 1:
        raise ValueError(f"schema_version must be a positive int, got {schema_version!r}")
    return {"schema_version": schema_version, "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions()}


def provenance_text(res: Mapping[str, Any]) -> str:
    """One report line of a result's header (:func:`result_header`): ``"created 2026-11-23T10:00:00+00:00 with
    medfm 0.1.0, torch 2.14.1, ..."`` (:func:`versions_text`); what ``res`` does not record (an older result) is
    left out, and a result with neither reads ``"created: not recorded"``."""
    found = res.get("versions")
    used = versions_text(found) if isinstance(found, Mapping) else ""
    created = res.get("created")
    if not created:
        return f"created: not recorded; {used}" if used else "created: not recorded"
    return f"created {created} with {used}" if used else f"created {created}"
