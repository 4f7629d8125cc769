"""Segmentation tasks: what a ``medfm segment`` run trains on and how it is evaluated.

One class per data set, all with the same small interface (:class:`SegTask`):
``train_set()`` (a :class:`medfm.data.segmentation.SegmentationArrays`), ``test_cases()``
(ids), ``load_case(id)`` (input for :func:`medfm.pipelines.segmentation.predict_probs`,
reference labels in the evaluation geometry, voxel spacing), ``predict(model, case)`` and
``overlay(case, pred)`` (one 2D slice for the PNG). Splits are the fixed rules of
:mod:`medfm.data.segmentation` and are recorded with their ids in every run's results.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from medfm.arg_checks import check_number, number_fits, shown
from medfm.config import check_field_types
from medfm.data import brats
from medfm.data import segmentation as segdata
from medfm.data.segmentation import NORMALIZATIONS
from medfm.registry import close_match_hint


@dataclass
class SegDataConfig:
    """Data section of a segmentation recipe.

    Attributes:
        dataset: "chase_db1", "msd_hippocampus", "lgg_flair" or "brats2015".
        scale: 2D resize factor applied to images before training and inference (the
            evaluation is always at the original resolution); 2D data sets only (volumes,
            also sliced for 2.5D, are used at their own resolution).
        patch: training crop size per spatial axis (None: whole, padded images); also the
            sliding-window size at inference.
        repeats: random crops per training image and epoch.
        context_slices: Hippocampus 2.5D: k neighbouring slices on each side as channels
            (a 2D encoder with ``2k + 1`` input channels); 0 = 3D. The ``2k + 1`` slices must fit in
            the data set's thinnest volume along ``slice_axis`` (:attr:`SegTask.smallest_volume`;
            wider windows only repeat the edge slices: k <= 15 along axis 0 of MSD Hippocampus).
        slice_axis: volume axis the 2.5D slices are taken along.
        flip_axes: spatial axes randomly flipped (p = 0.5 each) during training, each listed once.
        foreground_p: probability that a training crop is centred on a random foreground voxel
            instead of placed uniformly (nnU-Net's foreground oversampling; see
            :func:`medfm.training.segmentation.random_crop`). 0 = uniform crops only.
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
            or ``flip_axes`` that does not fit the data set's spatial dimensions, ``scale`` other
            than 1 for a volume data set, ``context_slices`` for a 2D data set or wider than its
            thinnest volume, a ``missing_sequence_fill`` that is not an input channel (with
            ``missing_sequence_p > 0``), a ``flip_axes`` entry listed twice, a field of the wrong type
            (:func:`medfm.config.check_field_types`).
    """

    dataset: str = "chase_db1"
    scale: float = 1.0
    patch: Optional[List[int]] = None
    repeats: int = 1
    context_slices: int = 0
    slice_axis: int = 0
    flip_axes: List[int] = field(default_factory=list)
    foreground_p: float = 0.0
    missing_sequence_p: float = 0.0
    missing_sequence_fill: int = 1
    normalize: str = "none"
    data_root: Optional[str] = None
    max_train: Optional[int] = None
    max_test: Optional[int] = None

    def __post_init__(self) -> None:
        check_field_types(self, "data.")  # (a list dataset was an unhashable-type TypeError, flip_axes=None another)
        if self.dataset not in TASKS:
            raise ValueError(f"unknown segmentation dataset {self.dataset!r}"
                             f"{close_match_hint(self.dataset, sorted(TASKS), cutoff=0.6, fallback='known')}")
        if not number_fits(self.scale, gt=0, le=4):
            raise ValueError(f"data.scale must be in (0, 4], got {shown(self.scale)}")
        if self.patch is not None and (not isinstance(self.patch, (list, tuple)) or not self.patch
                                       or not all(number_fits(p, ge=8, integer=True) for p in self.patch)):
            raise ValueError(f"data.patch must be a list of integers >= 8, got {shown(self.patch)}")
        for key in ("foreground_p", "missing_sequence_p"):
            check_number(f"data.{key}", getattr(self, key), ge=0, le=1)
        check_number("data.repeats", self.repeats, ge=1, integer=True)
        check_number("data.context_slices", self.context_slices, ge=0, integer=True, hint=" (0 = 3D)")
        check_number("data.slice_axis", self.slice_axis, ge=0, le=2, integer=True, hint=" (a volume axis)")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"data.normalize must be one of {list(NORMALIZATIONS)}, got {self.normalize!r}")
        for key in ("max_train", "max_test"):  # 0 used to mean "all cases"
            value = getattr(self, key)
            if value is not None:
                check_number(f"data.{key}", value, ge=1, integer=True, hint=" (or left out for all cases)")
        # before the normalize check: context_slices on a 2D data set is the mistake to name
        if self.context_slices and self.dataset != "msd_hippocampus":
            raise ValueError(f"data.context_slices (2.5D) applies to volume data sets (msd_hippocampus) only, "
                             f"not {self.dataset}")
        if self.normalize != "none" and self.context_slices:
            raise ValueError("data.normalize applies to 2D images and 3D volumes, not to 2.5D slice stacks "
                             "(context_slices > 0)")
        smallest = TASKS[self.dataset].smallest_volume
        if self.context_slices and smallest:  # (else the run trains on stacks of copied edge slices)
            n = smallest[self.slice_axis]
            check_number("data.context_slices", self.context_slices, ge=0, le=(n - 1) // 2, integer=True,
                         hint=f" (the 2k + 1 slices must fit in the thinnest {self.dataset} volume: {n} slices "
                              f"along data.slice_axis {self.slice_axis})")
        # volumes are trained at their own resolution, but a 2.5D model would be resized by the
        # recorded inference.scale at prediction time
        if self.scale != 1 and TASKS[self.dataset].spatial_dims == 3:
            raise ValueError(f"data.scale applies to 2D image data sets only; {self.dataset} volumes are used at "
                             f"their own resolution (leave data.scale out), got {self.scale}")
        channels = self.in_chans  # (the fill channel only matters with missing_sequence_p > 0)
        if not number_fits(self.missing_sequence_fill, ge=0, integer=True) or (
                self.missing_sequence_p > 0 and self.missing_sequence_fill >= channels):
            raise ValueError(f"data.missing_sequence_fill must be an input channel 0..{channels - 1} of "
                             f"{self.dataset}, got {shown(self.missing_sequence_fill)}")
        # checked here, not at the first training step or at inference after training
        dims = self.spatial_dims
        if self.patch is not None and len(self.patch) != dims:
            why = (f"with data.context_slices: {self.context_slices} (2.5D) {self.dataset} trains on 2-D slice crops"
                   if self.context_slices else f"{self.dataset} training crops are {dims}-D"
                   + (" volumes (data.context_slices > 0 trains 2.5D on 2-D slice crops)"
                      if self.dataset == "msd_hippocampus" else ""))
            raise ValueError(f"data.patch has {len(self.patch)} values, but {why}; give {dims} values, got "
                             f"{self.patch}")
        if not all(number_fits(a, ge=0, lt=dims, integer=True) for a in self.flip_axes):
            raise ValueError(f"data.flip_axes must be spatial axes 0..{dims - 1} of the {dims}-D crops, "
                             f"got {shown(self.flip_axes)}")
        if len(set(self.flip_axes)) != len(self.flip_axes):
            raise ValueError(f"data.flip_axes lists an axis twice (each listed axis is flipped with p = 0.5), "
                             f"got {shown(self.flip_axes)}")

    @property
    def spatial_dims(self) -> int:
        """Spatial dimensions of the training crops: 2 for images and 2.5D slice stacks, 3 for volumes."""
        return 2 if self.context_slices else TASKS[self.dataset].spatial_dims

    @property
    def in_chans(self) -> int:
        """Input channels of the model: the data set's channels, ``2k + 1`` for 2.5D (no file is read)."""
        return TASKS[self.dataset](self).in_chans


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
    #: named unions of labels scored besides the classes (``{name: labels}``; empty: none)
    regions: Dict[str, Tuple[int, ...]] = {}
    #: how model inputs are prepared when the model's ``inference`` settings cannot say it
    #: (recorded in the checkpoint's data record and shown on its model card; "" = nothing extra)
    input_preprocessing = ""
    #: volume data sets: the smallest size (voxels) along each axis over all volumes, so that
    #: :class:`SegDataConfig` can refuse a 2.5D slice window wider than a volume before any file
    #: is read (None: not recorded)
    smallest_volume: Optional[Tuple[int, int, int]] = None

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

    @staticmethod
    def _volume_overlay(volume: np.ndarray, pred: np.ndarray, ref: np.ndarray, axis: int = 0):
        """Overlay of a 3D case: the slice along ``axis`` with the most reference foreground
        (the middle one if none): ``(a, b)`` grey image in [0, 1], ``(a, b)`` bool prediction and
        reference foreground (all labels > 0 together). Inputs are ``(X, Y, Z)``, same shape.
        """
        from medfm.evaluation.segmentation import largest_slice

        z = largest_slice(ref, axis)
        return np.take(volume, z, axis), np.take(pred, z, axis) > 0, np.take(ref, z, axis) > 0

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
    # all 260 volumes read with nibabel: shapes from (31, 40, 24) to (43, 59, 47), as its PROVENANCE.md says
    smallest_volume = (31, 40, 24)

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
        return self._volume_overlay(case.image if case.image.ndim == 3 else case.image[0], pred, case.reference, 0)


class BratsTask(SegTask):
    """BraTS 2015 (DeepMedic example cases): 3D [FLAIR, T1c] -> 5 labels, plus the BraTS regions.

    Data and licence (CC BY-NC-SA 3.0, non-commercial): :mod:`medfm.data.brats`. Split: the
    provider's folders, train (2 cases) / test (2); the 2 ``validation`` cases are listed in
    :meth:`metadata` but not used, since ``medfm segment`` has no validation split (no model
    selection, no early stopping).

    Intensities: each channel is mapped to [0, 1] per case by its 0.5 / 99.5 percentiles
    inside the brain mask, clipped (:func:`medfm.data.brats.brain_percentile_unit`): medfm
    encoders take [0, 1] inputs, and the provider's within-brain z-scores are unbounded.
    Checkpoints record this as ``inference.intensity == "brain_percentile"`` (with
    ``percentiles`` and ``crop_margin``), so the segmentation pipeline repeats the scaling and
    the crop below when given the brain mask (``pipe({"image": [flair, t1c], "brain_mask":
    mask})``).
    Geometry: training volumes and model inputs are cropped to the brain-mask bounding box
    plus 4 voxels (about 150 x 180 x 140 of 240 x 240 x 155 voxels); predictions are pasted
    back into a full-size background volume (:func:`medfm.data.brats.paste_back`), so all
    metrics are computed against the full-size reference at 1 mm spacing.

    Besides per-class scores, the runner scores the standard BraTS regions (Menze et al.,
    "The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS)", IEEE TMI 34(10):
    1993-2024, 2015): whole tumour = labels {1, 2, 3, 4}, tumour core = {1, 3, 4},
    enhancing tumour = {4} (Dice and HD95 in mm, surface Dice).
    """

    name = "brats2015"
    spatial_dims = 3
    in_chans = 2
    label_names = brats.BRATS_LABELS
    split_rule = brats.BRATS_SPLIT_RULE
    # recorded in the checkpoint's ``inference`` (with ``percentiles`` 0.5 / 99.5 and ``crop_margin`` 4, the
    # defaults of medfm.adapters.segmentation.default_inference), so the pipeline repeats the scaling and crop
    # given the brain mask. Checkpoints written before recorded "unit": their inputs are taken as given in [0, 1].
    intensity = "brain_percentile"
    input_preprocessing = ("[FLAIR, T1c] volumes; each channel scaled per case to [0, 1] by its 0.5 / 99.5 "
                           "percentiles inside the brain mask, clipped (medfm.data.brats.brain_percentile_unit), "
                           "then cropped to the brain-mask bounding box + 4 voxels (medfm.data.brats.brain_bbox)")
    regions = brats.BRATS_REGIONS

    def train_ids(self) -> List[str]:
        """Same contract as :meth:`SegTask.train_ids`; BraTS: the ``train`` folder's 2 cases.

        Raises:
            DataFileMissingError: the data set's ``train`` folder is missing.
        """
        return self._limit(brats.brats_cases("train", self.data_root), self.cfg.max_train)

    def test_cases(self) -> List[str]:
        """Same contract as :meth:`SegTask.test_cases`; BraTS: the ``test`` folder's 2 cases.

        Raises:
            DataFileMissingError: the data set's ``test`` folder is missing.
        """
        return self._limit(brats.brats_cases("test", self.data_root), self.cfg.max_test)

    def _cropped(self, case_id: str, split: str):
        """``(full case dict, brain bbox)`` of one case (see :func:`medfm.data.brats.load_brats`)."""
        d = brats.load_brats(case_id, split, self.data_root)
        return d, brats.brain_bbox(d["brain"])

    def train_set(self) -> segdata.SegmentationArrays:
        """Same contract as :meth:`SegTask.train_set`; BraTS: one ``(2, x, y, z)`` float32 volume in
        [0, 1] ([FLAIR, T1c], brain bounding box + 4 voxels) and ``(x, y, z)`` labels {0..4} per
        training case; ``data.scale`` is not applied.

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (wrong shape, non-finite voxels,
            labels outside {0..4}).
        """
        images, masks = [], []
        for c in self.train_ids():
            d, box = self._cropped(c, "train")
            images.append(d["image"][(slice(None), *box)])
            masks.append(d["label"][box])
        return segdata.SegmentationArrays(images, masks, self.cfg.repeats)

    def load_case(self, case_id: str) -> Case:
        """Same contract as :meth:`SegTask.load_case`; BraTS (a ``test`` case): image
        ``(2, x, y, z)`` float32 in [0, 1], the brain bounding-box crop; reference the full
        ``(240, 240, 155)`` uint8 labels {0..4}; spacing ``(3,)`` mm; ``extra["bbox"]`` (3 slices),
        ``extra["affine"]`` ``(4, 4)``.

        Raises:
            DataFileMissingError, CorruptFileError, DataShapeError (see :meth:`train_set`).
        """
        d, box = self._cropped(case_id, "test")
        return Case(case_id, d["image"][(slice(None), *box)], d["label"], spacing=tuple(d["spacing"]),
                    extra={"bbox": box, "affine": d["affine"]})

    def predict(self, model: Any, case: Case, overlap: float, sw_batch_size: int) -> np.ndarray:
        """Same contract as :meth:`SegTask.predict`; BraTS: sliding windows over the brain crop,
        pasted back into a full-size ``(240, 240, 155)`` uint8 label map (background outside the box).

        Raises:
            SegmentationInputError: an input of the wrong rank or channel count for ``model``.
        """
        crop = super().predict(model, case, overlap, sw_batch_size)
        return brats.paste_back(crop, case.extra["bbox"], case.reference.shape)

    def overlay(self, case: Case, pred: np.ndarray):
        """Same contract as :meth:`SegTask.overlay`; BraTS: the axial (axis 2) slice of the brain
        crop with the most reference tumour: FLAIR ``(x, y)``, bool prediction and reference (all
        tumour labels together).
        """
        box = case.extra["bbox"]
        return self._volume_overlay(case.image[0], pred[box], case.reference[box], 2)

    def metadata(self) -> Dict[str, Any]:
        """Same contract as :meth:`SegTask.metadata`, plus ``"validation_ids"`` (listed, not used)
        and ``"regions"`` (``{region: labels}``).

        Raises:
            DataFileMissingError: a split folder is missing.
        """
        return {**super().metadata(), "validation_ids": brats.brats_cases("validation", self.data_root),
                "regions": {k: list(v) for k, v in self.regions.items()}}


TASKS = {"chase_db1": ChaseTask, "msd_hippocampus": HippocampusTask, "lgg_flair": LGGTask, "brats2015": BratsTask}


def build_task(cfg: SegDataConfig, data_root: Optional[str] = None) -> SegTask:
    """The task object for ``cfg.dataset``."""
    return TASKS[cfg.dataset](cfg, data_root)


__all__ = ["SegDataConfig", "Case", "SegTask", "ChaseTask", "LGGTask", "HippocampusTask", "BratsTask", "TASKS",
           "build_task"]
