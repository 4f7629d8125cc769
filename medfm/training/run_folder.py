"""A run folder left by a failed run: removed when the run created it and it holds nothing a user needs.

One rule for the ``medfm`` command (:func:`medfm.cli.main`) and every runner started from Python
(``run_pretrain``, ``run_finetune``, ``run_segmentation``, ``run_text_segmentation``, ``run_vqa``, ``run_fusion``,
``run_fusion_segmentation``): a run that fails before it logged a single step leaves no half-written folder (only
``config.yaml``, ``init.json``, an empty ``metrics.jsonl``, a LoRA ``base/``), which the next identical call would
find in its way. A folder that existed before the run, or that holds a training state (for a resume), a
non-empty ``metrics.jsonl`` (the curve of a run that diverged is what a user debugs) or a finished report
(``results.json``), is kept.

Torch-free: :mod:`medfm.training.state` (torch) is imported only when a failed run left a folder to look into, so
``medfm --help`` and the command's early errors answer before torch loads.
"""
from __future__ import annotations

import functools
import inspect
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple, TypeVar, Union

PathLike = Union[str, "os.PathLike[str]"]
F = TypeVar("F", bound=Callable[..., Any])


def holds_training_record(output: PathLike) -> bool:
    """Whether the folder ``output`` holds a training state (``trainer_state.json``, :data:`medfm.training.state.
    STATE_JSON`, at any depth: a fusion run's ``models/<label>/checkpoint``, ``medfm vqa``'s ``train_state``) or a
    non-empty ``metrics.jsonl`` (at any depth). False for a missing folder."""
    output = Path(output)
    if not output.is_dir():  # before importing torch (via the state module)
        return False
    from medfm.training.state import STATE_JSON

    if any(output.rglob(STATE_JSON)):
        return True
    return any(log.is_file() and log.stat().st_size > 0 for log in output.rglob("metrics.jsonl"))


def discard_failed_run(output: Optional[PathLike]) -> bool:
    """Remove ``output``, a run folder the failed run created, unless it holds a training record
    (:func:`holds_training_record`) or a finished report (``results.json``, written last: ``medfm eval``
    interrupted while it printed its summary removed the report it had just written whole); returns whether it was
    removed. The caller decides that the run created it (:func:`discard_on_failure` does). Nothing happens for None
    or a path that is no folder; a folder that cannot be removed entirely is left as it is then (no error hides the
    run's own)."""
    if output is None or not Path(output).is_dir() or holds_training_record(output):
        return False
    if (Path(output) / "results.json").is_file():  # a finished report: kept, as a training record is
        return False
    shutil.rmtree(output, ignore_errors=True)
    return not Path(output).exists()


@contextmanager
def discard_on_failure(output: Optional[PathLike],
                       errors: Union[type, Tuple[type, ...]] = BaseException) -> Iterator[None]:
    """Run the block; if it raises (by default anything, KeyboardInterrupt and SIGTERM's
    :class:`medfm.cli.Terminated` included; else one of ``errors``), remove ``output`` when it did not exist before
    the block and holds no training record or finished report (:func:`discard_failed_run`), then re-raise the same
    exception. A folder
    that existed before is never removed; None: nothing to watch.

    Args:
        output: the run folder to watch, or None.
        errors: the exception class(es) after which it is removed (default: any); others pass it by and leave the
            folder (``medfm eval``'s report folder, written whole, is removed only after the errors the command
            answers in one line and an interrupt: :func:`medfm.cli.main`).

    Example::

        with discard_on_failure(output):
            trainer.fit()
    """
    created_here = output is not None and not os.path.lexists(output)
    try:
        yield
    except errors:
        if created_here:
            discard_failed_run(output)
        raise


def discards_failed_output(run: F) -> F:
    """Decorate a runner whose parameter ``output`` is its run folder: each call runs under
    :func:`discard_on_failure` of that argument (given by position or by name), so a call that fails leaves no
    folder it created without a training record. The runner's name, docstring and signature are kept."""
    signature = inspect.signature(run)
    if "output" not in signature.parameters:
        raise TypeError(f"{run.__qualname__} has no parameter 'output' to watch")

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            output = signature.bind(*args, **kwargs).arguments.get("output")
        except TypeError:  # the call's own error, from the call itself
            output = None
        with discard_on_failure(output):
            return run(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["holds_training_record", "discard_failed_run", "discard_on_failure", "discards_failed_output"]
