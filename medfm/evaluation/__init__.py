"""medfm.evaluation: metrics, calibration, robustness scores and reports.

* :mod:`~medfm.evaluation.metrics`: MedMNIST ACC/AUC (exact MedMNIST semantics), balanced
  accuracy, per-class recall/AUC, confusion matrix, percentile-bootstrap CIs.
* :mod:`~medfm.evaluation.robustness`: MedMNIST-C balanced error, BE / rBE vs AlexNet,
  error-vs-severity plot.
* :mod:`~medfm.evaluation.protocols`: as-is / linear probe / kNN on frozen features.
* :mod:`~medfm.evaluation.suites`: declarative evaluation suites (``eval_suites/*.yaml``), run;
  their schema in :mod:`~medfm.evaluation.suite_spec`, checkpoint choice in
  :mod:`~medfm.evaluation.suite_checkpoints`, each dataset's data (and why one is skipped) in
  :mod:`~medfm.evaluation.suite_data`.
* :mod:`~medfm.evaluation.cam`: Grad-CAM / Eigen-CAM for every encoder family.
* :mod:`~medfm.evaluation.calibration`: top-label ECE with reliability-diagram bins.
* :mod:`~medfm.evaluation.report`: ``results.json`` + ``report.md`` + PNG figures.
* :mod:`~medfm.evaluation.plots`: the figures (matplotlib imported lazily).
* :mod:`~medfm.evaluation.zeroshot`: CLIP-style zero-shot classification from class prompts.
* :mod:`~medfm.evaluation.fusion`: the missing-modality protocol (modality subsets, MCAR / MNAR drops,
  patient-bootstrap AUC); its argument checks in :mod:`~medfm.evaluation.fusion_args`, its report in
  :mod:`~medfm.evaluation.fusion_report`, the segmentation variant in :mod:`~medfm.evaluation.fusion_seg`.
"""
from medfm.evaluation.calibration import Calibration, expected_calibration_error
from medfm.evaluation.metrics import TASKS, binary_auc, bootstrap_ci, check_task, classification_metrics
from medfm.evaluation.robustness import (
    alexnet_reference,
    balanced_error,
    be_rbe,
    corruption_errors,
    robustness_summary,
)
from medfm.evaluation.report import (
    SCHEMA_VERSION,
    checkpoint_hash,
    markdown_table,
    write_classification_report,
)

__all__ = [
    "TASKS",
    "check_task",
    "classification_metrics",
    "binary_auc",
    "bootstrap_ci",
    "balanced_error",
    "corruption_errors",
    "alexnet_reference",
    "be_rbe",
    "robustness_summary",
    "Calibration",
    "expected_calibration_error",
    "SCHEMA_VERSION",
    "checkpoint_hash",
    "markdown_table",
    "write_classification_report",
]
