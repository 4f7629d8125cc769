"""Segmentation tasks: what a ``medfm segment`` run trains on and how it is evaluated.

One class per data set, all with the same small interface (:class:`SegTask`):
``train_set()`` (a :class:`medfm.data.segmentation.SegmentationArrays`), ``test_cases()``
(ids), ``load_case(id)`` (input for :func:`medfm.pipelines.segmentation.predict_probs`,
reference labels in the evaluation geometry, voxel spacing), ``predict(model, case)`` and
``overlay(case, pred)`` (one 2D slice for the PNG). Splits are the fixed rules of
:mod:`medfm.data.segmentation` and are recorded with their ids in every run's results.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from medfm.data import segmentation as segdata
from medfm.data.segmentation import NORMALIZATIONS


@dataclass
class SegDataConfig:
    """Data section of a segmentation recipe.

    Attributes:
        dataset: "chase_db1", "msd_hippocampus" or "lgg_flair".
        scale: 2D resize factor applied to images before training and inference (the
            evaluation is always at the original resolution).
        patch: training crop size per spatial axis (None: whole, padded images); also the
            sliding-window size at inference.
        repeats: random crops per training image and epoch.
        context_slices: Hippocampus 2.5D: k neighbouring slices on each side as channels
            (a 2D encoder with ``2k + 1`` input channels); 0 = 3D.
        slice_axis: volume axis the 2.5D slices are taken along.
        flip_axes: spatial axes randomly flipped (p = 0.5 each) during training.
        missing_sequence_p: training augmentation for multi-sequence MR (modality dropout):
            each input channel other than ``missing_sequence_fill`` is replaced, with this
            probability, by a copy of channel ``missing_sequence_fill``, which is how
            TCGA-LGG stores a missing sequence (the FLAIR copied in its place; 3 of the 7
            LGG test patients have such copies). 0 = off.
        missing_sequence_fill: the channel that stands in for missing ones (LGG: 1 = FLAIR).
        normalize: "none" (inputs in [0, 1] as loaded) or "channel_zscore" (each whole
            training image, and each image at inference, standardised per channel by
            :func:`medfm.data.segmentation.channel_zscore`; recorded in the model's
            ``inference.normalize`` so the pipeline repeats it). Not with 2.5D.
        data_root: overrides ``$MEDFM_DATA``.
        max_train, max_test: use only the first N training / test cases (smoke tests).

    Raises:
        ValueError: an unknown dataset (with a close match), a value out of range, a ``patch``
            or ``flip_axes`` that does not fit the data set's spatial dimensions.
    """

    dataset: str = "chase_db1"
    scale: float = 1.0
    patch: Optional[List[int]] = None
    repeats: int = 1
    context_slices: int = 0
    slice_axis: int = 0
    flip_axes: List[int] = field(default_factory=list)
    missing_sequence_p: float = 0.0
    missing_sequence_fill: int = 1
    normalize: str = "none"
    data_root: Optional[str] = None
    max_train: Optional[int] = None
    max_test: Optional[int] = None

    def __post_init__(self) -> None:
        if self.dataset not in TASKS:
            close = difflib.get_close_matches(str(self.dataset), list(TASKS), n=1)
            raise ValueError(f"unknown segmentation dataset {self.dataset!r}"
                             + (f"; did you mean {close[0]!r}?" if close else f" (known: {sorted(TASKS)})"))
        if not 0 < self.scale <= 4:
            raise ValueError(f"data.scale must be in (0, 4], got {self.scale}")
        if self.patch is not None and (not self.patch or any(int(p) != p or p < 8 for p in self.patch)):
            raise ValueError(f"data.patch must be a list of integers >= 8, got {self.patch}")
        if self.repeats < 1 or self.context_slices < 0:
            raise ValueError("data.repeats must be >= 1 and data.context_slices >= 0")
        if not 0 <= self.missing_sequence_p <= 1 or self.missing_sequence_fill < 0:
            raise ValueError(f"data.missing_sequence_p must be in [0, 1] and missing_sequence_fill >= 0, got "
                             f"{self.missing_sequence_p}, {self.missing_sequence_fill}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize must be one of {list(NORMALIZATIONS)}, got {self.normalize!r}")
        for key in ("max_train", "max_test"):  # 0 used to mean "all cases"
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"data.{key} must be >= 1 (or left out for all cases), got {value}")
        if self.normalize != "none" and self.context_slices:
            raise ValueError("data.normalize applies to 2D images and 3D volumes, not to 2.5D slice stacks "
                             "(context_slices > 0)")
        if self.context_slices and self.dataset != "msd_hippocampus":
            raise ValueError("data.context_slices (2.5D) applies to volume data sets (msd_hippocampus) only")
        # checked here, not at the first training step or at inference after training
        dims = self.spatial_dims
        if self.patch is not None and len(self.patch) != dims:
            raise ValueError(f"data.patch has {len(self.patch)} values, but {self.dataset} training crops are "
                             f"{dims}-D here; give {dims} values, got {self.patch}")
        bad = [a for a in self.flip_axes if not 0 <= a < dims]
        if bad:
            raise ValueError(f"data.flip_axes must be spatial axes 0..{dims - 1} of the {dims}-D crops, got {self.flip_axes}")
        if not 0 <= self.slice_axis < 3:
            raise ValueError(f"data.slice_axis must be a volume axis 0, 1 or 2, got {self.slice_axis}")

    @property
    def spatial_dims(self) -> int:
        """Spatial dimensions of the training crops: 2 for images and 2.5D slice stacks, 3 for volumes."""
        return 2 if self.context_slices else TASKS[self.dataset].spatial_dims


@dataclass
class Case:
    """One evaluation case: model input, reference labels (evaluation geometry), spacing."""

    case_id: str
    image: np.ndarray
    reference: np.ndarray
    spacing: Optional[Tuple[float, ...]] = None
    extra: Dict[str, Any] = field(default_factory=dict)


class SegTask:
    """Interface of a segmentation task (see the module docstring)."""

    name = ""
    label_names: List[str] = []
    in_chans = 3
    spatial_dims = 2
    intensity = "unit"
    split_rule = ""

    def __init__(self, cfg: SegDataConfig, data_root: Optional[str] = None) -> None:
        self.cfg = cfg
        self.data_root = data_root or cfg.data_root

    def _limit(self, ids: List[str], n: Optional[int]) -> List[str]:
        return ids[:n] if n else ids

    def train_ids(self) -> List[str]:
        """Ids of the training cases under the data set's fixed split rule (the first ``max_train``).

        Raises:
            NotImplementedError: in the base class; subclasses implement it.
        """
        raise NotImplementedError

    def test_cases(self) -> List[str]:
        """Ids of the test cases under the fixed split rule (the first ``max_test``).

        Raises:
            NotImplementedError: in the base class; subclasses implement it.
        """
        raise NotImplementedError

    def train_set(self) -> segdata.SegmentationArrays:
        """The training split in memory at ``data.scale``, before ``data.normalize`` (see :meth:`training_arrays`).

        Raises:
            NotImplementedError: in the base class; subclasses implement it.
        """
        raise NotImplementedError

    def training_arrays(self) -> segdata.SegmentationArrays:
        """:meth:`train_set` with the recipe's input normalisation (``data.normalize``) applied."""
        arrays = self.train_set()
        if self.cfg.normalize == "channel_zscore":
            arrays.standardize_channels()
        return arrays

    def load_case(self, case_id: str) -> Case:
        """One test case at its original resolution: model input for
        :func:`medfm.pipelines.segmentation.predict_probs`, reference labels, voxel spacing.

        Raises:
            NotImplementedError: in the base class; subclasses implement it.
        """
        raise NotImplementedError

    def predict(self, model: Any, case: Case, overlap: float, sw_batch_size: int) -> np.ndarray:
        """Label map of ``case`` in the reference geometry."""
        from medfm.pipelines.segmentation import predict_labels

        return predict_labels(model, case.image, overlap=overlap, sw_batch_size=sw_batch_size)

    def overlay(self, case: Case, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image slice, predicted foreground, reference foreground), 2D, for the PNG overlay."""
        return case.image.transpose(1, 2, 0), pred > 0, case.reference > 0

    def metadata(self) -> Dict[str, Any]:
        """What a run's results record about the data (JSON-serialisable).

        Returns:
            ``{"dataset", "split_rule", "train_ids", "test_ids", "label_names"}``.

        Raises:
            NotImplementedError: in the base class (from :meth:`train_ids`).
            DataFileMissingError: the data set's folder is missing (LGG, Hippocampus).
        """
        return {"dataset": self.name, "split_rule": self.split_rule, "train_ids": self.train_ids(),
                "test_ids": self.test_cases(), "label_names": self.label_names}


class ChaseTask(SegTask):
    """CHASE_DB1 vessels: first observer as truth; second observer as the human reference."""

    name = "chase_db1"
    label_names = segdata.CHASE_LABELS
    split_rule = segdata.SPLIT_RULES["chase_db1"]

    def train_ids(self) -> List[str]:
        """Same contract as :meth:`SegTask.train_ids`; CHASE_DB1: the 20 training images
        ``"01L"`` .. ``"10R"`` (children 01-10, both eyes). Reads no files.
        """
        return self._limit(segdata.chase_ids("train"), self.cfg.max_train)

    def test_cases(self) -> List[str]:
        """Same contract as :meth:`SegTask.test_cases`; CHASE_DB1: the 8 images ``"11L"`` .. ``"14R"``."""
        return self._limit(segdata.chase_ids("test"), self.cfg.max_test)

    def train_set(self) -> segdata.SegmentationArrays:
        """Same contract as :meth:`SegTask.train_set`; CHASE_DB1: one ``(3, H, W)`` RGB image
        (uint8 / 255 -> [0, 1]) and first-observer ``(H, W)`` {0, 1} mask per training image,
        resized by ``data.scale`` (960 x 999 at scale 1).

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (a mask not matching its image).
        """
        images, masks = [], []
        for i in self.train_ids():
            d = segdata.load_chase(i, self.data_root)
            images.append(segdata.resize_image(d["image"], self.cfg.scale).transpose(2, 0, 1))
            masks.append(segdata.resize_mask(d["mask"], self.cfg.scale).astype(np.uint8))
        return segdata.SegmentationArrays(images, masks, self.cfg.repeats)

    def load_case(self, case_id: str) -> Case:
        """Same contract as :meth:`SegTask.load_case`; CHASE_DB1: image ``(3, 960, 999)``
        float32 in [0, 1], reference ``(960, 999)`` uint8 {0, 1} (first observer), no spacing,
        ``extra["second_observer"]`` ``(960, 999)`` bool.

        Raises:
            ValueError: an id not like ``"01L"``.
            DataFileMissingError, CorruptFileError, DataShapeError (a mask not matching its image).
        """
        d = segdata.load_chase(case_id, self.data_root)
        return Case(case_id, d["image"].transpose(2, 0, 1).astype(np.float32) / 255.0, d["mask"].astype(np.uint8),
                    extra={"second_observer": d["mask2"]})


class LGGTask(SegTask):
    """TCGA-LGG FLAIR abnormality; a case is a patient (all slices), Dice per patient."""

    name = "lgg_flair"
    label_names = segdata.LGG_LABELS
    split_rule = segdata.SPLIT_RULES["lgg_flair"]

    def train_ids(self) -> List[str]:
        """Same contract as :meth:`SegTask.train_ids`; TCGA-LGG: the 16 training patients
        (sorted patient folders at positions ``i % 3 != 2``).

        Raises:
            DataFileMissingError: the LGG ``images`` folder is missing.
        """
        return self._limit(segdata.lgg_patients("train", self.data_root), self.cfg.max_train)

    def test_cases(self) -> List[str]:
        """Same contract as :meth:`SegTask.test_cases`; TCGA-LGG: the 7 test patients (positions ``i % 3 == 2``).

        Raises:
            DataFileMissingError: the LGG ``images`` folder is missing.
        """
        return self._limit(segdata.lgg_patients("test", self.data_root), self.cfg.max_test)

    def train_set(self) -> segdata.SegmentationArrays:
        """Same contract as :meth:`SegTask.train_set`; TCGA-LGG: one item per slice of every
        training patient: ``(3, H, W)`` [pre-contrast, FLAIR, post-contrast] (uint8 / 255 -> [0, 1])
        and ``(H, W)`` {0, 1} mask, resized by ``data.scale`` (256 x 256 at scale 1).

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (mask/slice size mismatch).
        """
        images, masks = [], []
        for p in self.train_ids():
            d = segdata.load_lgg_patient(p, self.data_root)
            for im, m in zip(d["image"], d["mask"]):
                images.append(segdata.resize_image(im, self.cfg.scale).transpose(2, 0, 1))
                masks.append(segdata.resize_mask(m, self.cfg.scale).astype(np.uint8))
        return segdata.SegmentationArrays(images, masks, self.cfg.repeats)

    def load_case(self, case_id: str) -> Case:
        """Same contract as :meth:`SegTask.load_case`; TCGA-LGG: a case is a patient, image
        ``(S, 3, 256, 256)`` float32 in [0, 1] (all S slices), reference ``(S, 256, 256)`` uint8 {0, 1}, no spacing.

        Raises:
            DataFileMissingError (unknown patient, no slices, a missing mask), CorruptFileError,
            DataShapeError (mask/slice size mismatch, slices of different sizes).
        """
        d = segdata.load_lgg_patient(case_id, self.data_root)
        return Case(case_id, d["image"].transpose(0, 3, 1, 2).astype(np.float32) / 255.0, d["mask"].astype(np.uint8))

    def predict(self, model: Any, case: Case, overlap: float, sw_batch_size: int) -> np.ndarray:
        """Same contract as :meth:`SegTask.predict`; TCGA-LGG: each ``(3, H, W)`` slice is
        segmented on its own, giving an ``(S, H, W)`` uint8 label map.

        Raises:
            SegmentationInputError: slices of the wrong rank or channel count for ``model``.
        """
        from medfm.pipelines.segmentation import predict_labels

        return np.stack([predict_labels(model, s, overlap=overlap, sw_batch_size=sw_batch_size) for s in case.image])

    def overlay(self, case: Case, pred: np.ndarray):
        """Same contract as :meth:`SegTask.overlay`; TCGA-LGG: the slice with the most reference
        foreground (the middle one if none): ``(H, W, 3)`` image, ``(H, W)`` bool prediction and reference.
        """
        from medfm.evaluation.segmentation import largest_slice

        z = largest_slice(case.reference, 0)
        return case.image[z].transpose(1, 2, 0), pred[z] > 0, case.reference[z] > 0


class HippocampusTask(SegTask):
    """MSD Task04 Hippocampus, 3D (``context_slices == 0``) or 2.5D; Dice per class and case."""

    name = "msd_hippocampus"
    spatial_dims = 3  # 2 with context_slices (set per instance)
    label_names = segdata.HIPPOCAMPUS_LABELS
    split_rule = segdata.SPLIT_RULES["msd_hippocampus"]
    intensity = "percentile"

    def __init__(self, cfg: SegDataConfig, data_root: Optional[str] = None) -> None:
        super().__init__(cfg, data_root)
        self.in_chans = 2 * cfg.context_slices + 1 if cfg.context_slices else 1
        self.spatial_dims = 2 if cfg.context_slices else 3

    def train_ids(self) -> List[str]:
        """Same contract as :meth:`SegTask.train_ids`; MSD Hippocampus: the 208 training cases
        (sorted ids with image and label at positions ``i % 5 != 4``).

        Raises:
            DataFileMissingError: the data set folder or its ``imagesTr`` is missing.
        """
        return self._limit(segdata.hippocampus_cases("train", self.data_root), self.cfg.max_train)

    def test_cases(self) -> List[str]:
        """Same contract as :meth:`SegTask.test_cases`; MSD Hippocampus: the 52 test cases (positions ``i % 5 == 4``).

        Raises:
            DataFileMissingError: the data set folder or its ``imagesTr`` is missing.
        """
        return self._limit(segdata.hippocampus_cases("test", self.data_root), self.cfg.max_test)

    def train_set(self) -> segdata.SegmentationArrays:
        """Same contract as :meth:`SegTask.train_set`; MSD Hippocampus: 3D: one ``(1, X, Y, Z)``
        float32 volume in [0, 1] (percentile-normalised) per case; 2.5D: one ``(2k + 1, a, b)`` slice
        stack per slice along ``slice_axis``. Labels {0, 1, 2}; ``data.scale`` is not applied.

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (shape or label mismatch, non-finite voxels).
        """
        images, masks = [], []
        k, axis = self.cfg.context_slices, self.cfg.slice_axis
        for c in self.train_ids():
            d = segdata.load_hippocampus(c, self.data_root)
            if k:
                images += list(segdata.slice_stack(d["image"], k, axis))
                masks += list(np.moveaxis(d["label"], axis, 0))
            else:
                images.append(d["image"][None])
                masks.append(d["label"])
        return segdata.SegmentationArrays(images, masks, self.cfg.repeats)

    def load_case(self, case_id: str) -> Case:
        """Same contract as :meth:`SegTask.load_case`; MSD Hippocampus: image ``(1, X, Y, Z)``
        (3D) or ``(X, Y, Z)`` (2.5D) float32 in [0, 1], reference ``(X, Y, Z)`` uint8 {0, 1, 2},
        spacing ``(3,)`` mm, ``extra["affine"]`` ``(4, 4)``.

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (shape or label mismatch, non-finite voxels).
        """
        d = segdata.load_hippocampus(case_id, self.data_root)
        image = d["image"] if self.cfg.context_slices else d["image"][None]
        return Case(case_id, image, d["label"], spacing=tuple(d["spacing"]), extra={"affine": d["affine"]})

    def overlay(self, case: Case, pred: np.ndarray):
        """Same contract as :meth:`SegTask.overlay`; MSD Hippocampus: the axis-0 slice with the
        most reference foreground (the middle one if none): ``(Y, Z)`` grey image, ``(Y, Z)`` bool
        prediction and reference (anterior and posterior together).
        """
        from medfm.evaluation.segmentation import largest_slice

        vol = case.image if case.image.ndim == 3 else case.image[0]
        z = largest_slice(case.reference, 0)
        return vol[z], pred[z] > 0, case.reference[z] > 0


TASKS = {"chase_db1": ChaseTask, "msd_hippocampus": HippocampusTask, "lgg_flair": LGGTask}


def build_task(cfg: SegDataConfig, data_root: Optional[str] = None) -> SegTask:
    """The task object for ``cfg.dataset``."""
    return TASKS[cfg.dataset](cfg, data_root)


__all__ = ["SegDataConfig", "Case", "SegTask", "ChaseTask", "LGGTask", "HippocampusTask", "TASKS", "build_task"]
