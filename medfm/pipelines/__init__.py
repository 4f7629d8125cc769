"""``medfm.pipeline(task, model=...)``: inference on raw inputs with a checkpoint's own preprocessing.

Tasks map to pipeline classes imported on first use (transformers' ``pipeline`` convention).
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Dict, Tuple

#: task -> (module, class)
PIPELINE_TASKS: Dict[str, Tuple[str, str]] = {
    "image-classification": ("medfm.pipelines.classification", "ImageClassificationPipeline"),
    "image-segmentation": ("medfm.pipelines.segmentation", "ImageSegmentationPipeline"),
    "visual-question-answering": ("medfm.pipelines.vqa", "VisualQuestionAnsweringPipeline"),
}


def pipeline(task: str, model: Any, **kwargs: Any):
    """Build the pipeline for ``task`` around ``model`` (checkpoint dir, ``hf-hub:`` id or module).

    Raises:
        ValueError: unknown task (with close matches).
    """
    if task not in PIPELINE_TASKS:
        close = difflib.get_close_matches(task, list(PIPELINE_TASKS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(PIPELINE_TASKS)})"
        raise ValueError(f"unknown pipeline task {task!r}{hint}")
    module, cls = PIPELINE_TASKS[task]
    return getattr(importlib.import_module(module), cls)(model, **kwargs)


__all__ = ["pipeline", "PIPELINE_TASKS"]
