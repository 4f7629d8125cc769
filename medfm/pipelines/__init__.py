"""``medfm.pipeline(task, model=...)``: inference on raw inputs with a checkpoint's own preprocessing.

Tasks map to pipeline classes imported on first use (transformers' ``pipeline`` convention).
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

from medfm.registry import close_match_hint

#: task -> (module, class)
PIPELINE_TASKS: Dict[str, Tuple[str, str]] = {
    "image-classification": ("medfm.pipelines.classification", "ImageClassificationPipeline"),
    "image-segmentation": ("medfm.pipelines.segmentation", "ImageSegmentationPipeline"),
    "visual-question-answering": ("medfm.pipelines.vqa", "VisualQuestionAnsweringPipeline"),
}


def pipeline(task: str, model: Any, **kwargs: Any):
    """Build the pipeline for ``task`` around ``model`` (checkpoint dir, ``hf-hub:`` id or module).

    Raises:
        ValueError: unknown task (with close matches; a task that is not a string too, which was a
            ``TypeError: unhashable type`` for a list).
    """
    if not isinstance(task, str) or task not in PIPELINE_TASKS:
        raise ValueError(f"unknown pipeline task {task!r}"
                         f"{close_match_hint(task, list(PIPELINE_TASKS), cutoff=0.6, fallback='known')}")
    module, cls = PIPELINE_TASKS[task]
    return getattr(importlib.import_module(module), cls)(model, **kwargs)


__all__ = ["pipeline", "PIPELINE_TASKS"]
