"""What one dataset of an evaluation suite is scored on (:func:`medfm.evaluation.suites.run_suite`).

:func:`prepare_dataset` reads a dataset's classes, checks its data are on disk (:func:`classes_on_disk`),
picks its checkpoint (:mod:`medfm.evaluation.suite_checkpoints`) and loads the splits the protocol needs; a
dataset that cannot be evaluated raises :class:`DatasetSkipped` with the reason the report shows (data not on
disk, no matching checkpoint, 3D data for a 2D classifier, channels the encoder cannot take, an empty split, a
linear probe's train split holding one class). :func:`check_max_samples` refuses, before the run, a ``max_samples`` that
:func:`scored_subset` would refuse for a dataset on disk (below the classes, or a multi-label set's label groups,
of its scored split); :func:`scored_subset` reduces the scored split to a dataset's
``max_samples``; :func:`dataset_meta` is the provenance each run's ``results.json`` records;
:func:`no_data_error` is the one-line error for a suite none of whose datasets is on disk.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medfm.data.errors import DataFileMissingError, MedFMDataError
from medfm.evaluation.array_sets import ArraySet
from medfm.evaluation.subsets import SUBSET_SEED, scored_subset_indices
from medfm.evaluation.suite_checkpoints import CheckpointCache, pick_checkpoint
from medfm.evaluation.suite_report import MEDVIT_SMALL_C
from medfm.evaluation.suite_spec import DatasetSpec, Suite

if TYPE_CHECKING:  # the readers are imported where used
    from medfm.data.imagefolder import FolderListing


class DatasetSkipped(Exception):
    """A dataset that cannot be evaluated; the message is the reason shown in the report.

    ``missing``: its data are not on disk (no MedMNIST file at any size asked for, no image
    folder); data that are there but unreadable are not missing.
    """

    def __init__(self, reason: str, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def dataset_classes(spec: DatasetSpec, data_root: Optional[str],
                    listing: Optional[FolderListing] = None) -> Tuple[str, List[str], bool, Optional[int]]:
    """``(task, label_names, is_3d, n_channels or None)`` of a dataset without loading its images
    (an image folder's channels are a split's, its first image's: None here, :func:`prepare_dataset` reads them
    from that image's header, :func:`~medfm.data.imagefolder.split_loads_grey`; its classes are the loaded dataset's
    ``label_names``, :func:`medfm.data.imagefolder.folder_classes`, from ``listing``, the folder's
    :func:`~medfm.data.imagefolder.list_image_folder` when already made, else listed here).

    Raises:
        MedFMDataError: an image folder that is not there (a DataFileMissingError), holds no image, or a class
            folder without one (:class:`~medfm.data.imagefolder.EmptyClassFolderError`, a DataShapeError).
    """
    if spec.flag is not None:
        from medfm.data.medmnist import dataset_info

        info = dataset_info(spec.flag)
        return info["task"], list(info["label_names"]), info["is_3d"], info["n_channels"]
    from medfm.data.imagefolder import list_image_folder

    if listing is None:
        listing = list_image_folder(spec.folder, data_root)
    return "multi-class", listing.label_names, False, None


def _medmnist_files(spec: DatasetSpec, data_root: Optional[str]) -> List[Path]:
    """The files a MedMNIST dataset may be read from: ``<flag>[_<size>].npz`` at its ``size``, else at every
    released size (the sizes hold the same images, in the same order, with the same labels)."""
    from medfm.data.medmnist import available_sizes, medmnist_path

    return [medmnist_path(spec.flag, s, data_root) for s in ([spec.size] if spec.size else available_sizes(spec.flag))]


def classes_on_disk(spec: DatasetSpec, data_root: Optional[str]) -> Tuple[str, List[str], bool, Optional[int]]:
    """:func:`dataset_classes` of a dataset whose data are on disk: the suite's rule for skipping a dataset as
    missing (a MedMNIST set without its file at ``size``, or at any released size when ``size`` is not given; an
    image folder that is not there), which :func:`prepare_dataset` and :func:`check_max_samples` both apply (the
    check lists an image folder once, for its scored split, whose listing fails as this one: :func:`_scored_labels`).

    Raises:
        DatasetSkipped: the data are not on disk (``missing``), or an image folder holds no image or a class
            folder without one (not ``missing``: the data are there, badly laid out).
    """
    return _on_disk(spec, data_root)[0]


def _on_disk(spec: DatasetSpec,
             data_root: Optional[str]) -> Tuple[Tuple[str, List[str], bool, Optional[int]], Optional[FolderListing]]:
    """``(classes, listing)``: :func:`classes_on_disk`'s classes and an image folder's
    :func:`~medfm.data.imagefolder.list_image_folder` (None for a MedMNIST set), which :func:`prepare_dataset` passes
    to the splits it loads: the folder is listed once (it was listed for its classes, then for each split).

    Raises:
        DatasetSkipped: as :func:`classes_on_disk`.
    """
    listing = None
    try:
        if spec.flag is None:
            from medfm.data.imagefolder import list_image_folder

            listing = list_image_folder(spec.folder, data_root)
        classes = dataset_classes(spec, data_root, listing)
    except MedFMDataError as err:  # an image folder that is not there is missing data (one badly laid out is there)
        raise DatasetSkipped(str(err), missing=isinstance(err, DataFileMissingError)) from None
    if spec.flag is not None:
        paths = _medmnist_files(spec, data_root)
        if not any(p.is_file() for p in paths):
            more = " ..." if len(paths) > 2 else ""
            raise DatasetSkipped(f"not on disk: no {' or '.join(p.name for p in paths[:2])}{more} in {paths[0].parent}",
                                 missing=True)
    return classes, listing


def _scored_labels(spec: DatasetSpec, data_root: Optional[str]) -> Optional[Tuple[str, np.ndarray]]:
    """``(task, labels)`` of the split a dataset on disk is scored on (``spec.split``), read without its images:
    a MedMNIST file's ``<split>_labels`` (``(N, 1)`` classes or ``(N, L)`` 0/1 labels; the first file of
    :func:`_medmnist_files` on disk, the set on disk by :func:`classes_on_disk`), or an image folder's ``(N,)``
    class indices of the split :class:`~medfm.data.imagefolder.ImageFolderDataset` draws
    (:func:`~medfm.data.imagefolder.folder_split`, with the spec's ``split_rule``, as :func:`load_split` loads it).
    The folder is listed once: a listing that fails is the folder :func:`classes_on_disk` skips (it was listed
    for its classes first, then for its split, a skipped-entries warning printed twice).

    Returns:
        The task and labels, or None when the run skips the dataset with its reason: not on disk, unreadable (a
        file or folder), or an image folder laid out as the reader refuses.
    """
    if spec.flag is not None:
        try:
            task = classes_on_disk(spec, data_root)[0]
        except DatasetSkipped:
            return None
        path = next((p for p in _medmnist_files(spec, data_root) if p.is_file()), None)
        if path is None:  # gone since classes_on_disk found it
            return None
        from medfm.data.medmnist import read_split_arrays

        try:  # the dataset's own reader, labels only
            return task, read_split_arrays(path, spec.split, ("labels",))[0]
        except MedFMDataError:
            return None
    from medfm.data.imagefolder import ImageFolderDataset, folder_split

    try:
        return ImageFolderDataset.task, folder_split(spec.folder, spec.split, data_root, split_rule=spec.split_rule)[3]
    except MedFMDataError:
        return None


def check_max_samples(suite: Suite, data_root: Optional[str]) -> None:
    """Refuse a dataset's ``max_samples`` (or ``--max-samples``) that the run would refuse when it reaches the
    dataset (:func:`scored_subset`), for the datasets that will be scored: those on disk (:func:`classes_on_disk`).

    The rule is :func:`~medfm.evaluation.subsets.scored_subset_indices`'s, on the labels of the scored split
    (:func:`_scored_labels`): a stratified subset keeps one image of each class present in the split at least
    (multi-label sets: of each label group, the images sharing their rarest positive label, and those with none),
    so a ``max_samples`` below their number is refused (the smallest draw, ``label_fraction_indices`` at fraction
    ``1 / N``, keeps exactly one image per group). Multi-label sets (ChestMNIST) used to go unchecked and stop the
    run when it reached them; image folders were checked against their class folders, not the classes of the
    scored split, refusing a ``max_samples`` the run takes when a small class has no image in that split. A
    dataset that is not there, unreadable or with an empty split is skipped by the run whatever its classes
    (``medmnist_c.yaml --max-samples 10`` was refused for OrganAMNIST's 11 classes with OrganAMNIST not on disk).
    :func:`medfm.evaluation.suites.run_suite` runs it before any checkpoint is loaded or anything is written, so
    a set on disk that the run then skips for its checkpoint (no ``as-is`` checkpoint with its classes, a 2D
    classifier for 3D data: known only once the checkpoints are loaded) is checked too.

    Raises:
        ConfigError: ``"s.yaml: datasets[9] (organamnist): max_samples 10 is below organamnist's 11 classes in its
            test split: the stratified subset keeps at least one image of each class; raise max_samples
            (--max-samples)"``; multi-label: ``"... below chestmnist's 15 label groups in its test split (an image's
            group is its rarest positive label, or none): ... of each group; ..."``.
    """
    from medfm.config import ConfigError, recipe_location
    from medfm.data.medmnist import label_fraction_indices

    where = recipe_location(suite, "")  # "s.yaml" for a suite read from a file, as its other errors
    for i, spec in enumerate(suite.datasets):
        if spec.max_samples is None:
            continue
        scored = _scored_labels(spec, data_root)
        if scored is None or not len(scored[1]):  # not on disk, unreadable or an empty split: skipped by the run
            continue
        task, labels = scored
        try:
            groups = len(label_fraction_indices(labels, 1 / len(labels)))
        except ValueError:  # labels the loader refuses (not 0/1, out of shape): skipped by the run
            continue
        if spec.max_samples < groups:
            at = f"{where}: datasets[{i}]" if where else f"datasets[{i}]"
            multi = task.startswith("multi-label")
            what = "label groups" if multi else "classes"
            why = " (an image's group is its rarest positive label, or none)" if multi else ""
            raise ConfigError(f"{at} ({spec.name}): max_samples {spec.max_samples} is below {spec.name}'s {groups} "
                              f"{what} in its {spec.split} split{why}: the stratified subset keeps at least one image "
                              f"of each {'group' if multi else 'class'}; raise max_samples (--max-samples)")


def load_split(spec: DatasetSpec, split: str, size: Optional[int], data_root: Optional[str], as_rgb: bool,
               listing: Optional[FolderListing] = None, in_chans: Optional[int] = None) -> Any:
    """One split of a dataset: a :class:`~medfm.data.medmnist.MedMNISTDataset` (``size`` None: 28)
    or an :class:`~medfm.data.imagefolder.ImageFolderDataset`; ``as_rgb`` repeats grey channels. ``listing``: an
    image folder's :func:`~medfm.data.imagefolder.list_image_folder`, already made (not listed again), else None.
    ``in_chans``: an image folder's channels, 1 or 3, whatever its split's first image (the scored split's, for the
    splits a probe is fitted on); None: 3 with ``as_rgb``, else its first image's.

    Raises:
        MedFMDataError: the file or folder is missing or unreadable.
    """
    if spec.flag is not None:
        from medfm.data.medmnist import MedMNISTDataset

        return MedMNISTDataset(spec.flag, split=split, size=size or 28, data_root=data_root, as_rgb=as_rgb)
    from medfm.data.imagefolder import ImageFolderDataset

    return ImageFolderDataset(spec.folder, split=split, size=size, in_chans=in_chans or (3 if as_rgb else None),
                              data_root=data_root, name=spec.name, split_rule=spec.split_rule, listing=listing)


def default_size(spec: DatasetSpec, encoder: Any) -> Optional[int]:
    """The size a dataset is loaded at: its ``size``, else the encoder's ``img_size`` (a MedMNIST set
    not released at it: 28)."""
    if spec.size is not None:
        return spec.size
    if spec.flag is None:
        return encoder.img_size
    from medfm.data.medmnist import available_sizes

    return encoder.img_size if encoder.img_size in available_sizes(spec.flag) else 28


def _check_probe_classes(train: Any, task: str, names: Sequence[str], dataset: str, split: str) -> None:
    """Skip a single-label dataset whose probe split holds one class (the whole suite used to stop
    with "the probe's training labels hold a single class ([0]); cannot fit", naming no dataset)."""
    if task.startswith("multi-label"):  # a constant label is pinned, not refused
        return
    present = np.unique(np.asarray(train.labels).reshape(-1))
    if len(present) < 2:
        raise DatasetSkipped(f"the {split} split of {dataset} holds one class only ({names[int(present[0])]!r}): a "
                             "linear probe needs two (use --protocol knn, or another train_split)")


def prepare_dataset(spec: DatasetSpec, suite: Suite, checkpoints: Sequence[str], models: CheckpointCache,
                    data_root: Optional[str]) -> Dict[str, Any]:
    """Choose the checkpoint and load the data of one dataset.

    Returns:
        ``{"checkpoint", "model", "core", "sha", "encoder", "ds", "train", "val", "size"}``: ``ds`` the
        scored split, ``train`` (linear/knn) and ``val`` (``linear_c: val``) the fitting splits or None.

    Raises:
        DatasetSkipped: with the reason (see the module docstring).
        ChannelMismatchError: an ``as-is`` checkpoint matching the classes but not the channels (an image
            folder's: those of its scored split's first image, read from its header before any image is decoded).
        CheckpointError: an unreadable checkpoint.
    """
    from medfm.data.imagefolder import split_loads_grey
    from medfm.evaluation.evaluate import ChannelMismatchError, check_split_has_images

    protocol = suite.protocol.name
    (task, names, is_3d, n_ch), listing = _on_disk(spec, data_root)  # before any checkpoint is matched
    ckpt, why = pick_checkpoint(spec, checkpoints, models, protocol, task, names, is_3d)
    if ckpt is None:
        raise DatasetSkipped(why)
    model, core, sha = models.get(ckpt)
    encoder = getattr(core, "encoder", None)
    if encoder is None:
        raise DatasetSkipped(f"checkpoint {ckpt} holds no encoder")
    enc_3d = getattr(encoder, "spatial_dims", 2) == 3
    if protocol == "finetune" and (spec.flag is None or is_3d or enc_3d):
        raise DatasetSkipped("the finetune protocol fine-tunes 2D classifiers on MedMNIST 2D sets only")
    if is_3d and not enc_3d and protocol == "as-is":
        raise DatasetSkipped("3D volumes but the checkpoint's classifier is 2D (use --protocol linear/knn for 2.5D "
                             "slice features, or a 3D encoder)")
    if enc_3d and not is_3d:
        raise DatasetSkipped("2D images but the checkpoint's encoder is 3D")

    def channels_ok(n: int) -> bool:
        if n == encoder.in_chans:
            return False
        if protocol == "finetune":
            raise DatasetSkipped(f"the encoder takes {encoder.in_chans} channel(s), {spec.name} has {n}: "
                                 "cannot fine-tune")
        if protocol == "as-is":
            raise ChannelMismatchError(f"checkpoint {ckpt} expects {encoder.in_chans}-channel images but "
                                       f"{spec.name} has {n} channel(s)")
        if n == 3:
            raise DatasetSkipped(f"RGB data but the encoder takes {encoder.in_chans} channel(s)")
        if encoder.in_chans != 3:  # grey data is repeated for an RGB encoder only (it was loaded as RGB, then the
            # run stopped at feature extraction with the encoder's channel error)
            raise DatasetSkipped(f"grey data but the encoder takes {encoder.in_chans} channel(s) (grey images are "
                                 "repeated to 3 channels for an RGB encoder only)")
        return True  # grey data, RGB encoder: repeat channels (as_rgb)

    as_rgb = channels_ok(n_ch) if n_ch is not None else False
    size = default_size(spec, encoder)
    if getattr(encoder, "fixed_size", False) and size != encoder.img_size:
        raise DatasetSkipped(f"the encoder takes only {encoder.img_size} px inputs; the data is {size} px")
    grey = None if listing is None else split_loads_grey(listing, spec.split, split_rule=spec.split_rule)
    if grey is not None:  # an image folder's channels, those of its scored split's first image by its header (the
        # dataset's rule), checked before any image is decoded (they were refused once the split was loaded); grey
        # data for an RGB encoder is loaded as RGB at once. None: the load below raises (no image, the first one
        # unreadable)
        as_rgb = channels_ok(1 if grey else 3)
    try:
        ds = load_split(spec, spec.split, size, data_root, as_rgb, listing)
        check_split_has_images(ds, spec.name, spec.split, "score")
        # an image folder's fitting splits take the scored split's channels (each split's first image decided: a
        # probe for RGB test images was fitted on grey train images when the train split's first image was grey)
        fit_chans = ds.n_channels if listing is not None else None
        train = (load_split(spec, spec.train_split, size, data_root, as_rgb, listing, fit_chans)
                 if protocol in ("linear", "knn") else None)
        if train is not None:
            fit = "fit the probe on" if protocol == "linear" else "draw kNN neighbours from"
            check_split_has_images(train, spec.name, spec.train_split, fit)
            if protocol == "linear":
                _check_probe_classes(train, task, names, spec.name, spec.train_split)
        val = (load_split(spec, spec.val_split, size, data_root, as_rgb, listing, fit_chans)
               if protocol == "linear" and suite.protocol.linear_c == "val" else None)
        if val is not None:
            check_split_has_images(val, spec.name, spec.val_split, "choose the probe's C on")
    except MedFMDataError as err:  # unreadable data, an empty split (EmptySplitError)
        raise DatasetSkipped(str(err)) from None
    return {"checkpoint": ckpt, "model": model, "core": core, "sha": sha, "encoder": encoder, "ds": ds, "train": train,
            "val": val, "size": size}


def scored_subset(ds: Any, max_samples: Optional[int]) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """``(dataset, record)``: ``ds`` reduced to :func:`scored_subset_indices` (an :class:`ArraySet`
    with its size, md5 and flag) and what ``results.json`` records of it; ``(ds, None)`` when
    ``max_samples`` is None or not below ``len(ds)``."""
    if max_samples is None or max_samples >= len(ds):
        return ds, None
    idx = scored_subset_indices(ds.labels, max_samples)
    sub = ArraySet(np.ascontiguousarray(ds.images[idx]), ds, labels=np.asarray(ds.labels)[idx])
    return sub, {"max_samples": int(max_samples), "n": int(len(idx)), "of": int(len(ds)), "seed": SUBSET_SEED,
                 "rule": "class-stratified (medfm.data.label_fraction_indices), the same images clean and corrupted",
                 "indices": idx.tolist()}


def dataset_meta(spec: DatasetSpec, ds: Any, corrupted: bool, subset: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Provenance of one dataset's runs (per-run ``results.json`` ``meta``, which ``medfm card`` reads).

    ``references``: published figures for what was run: MedMNIST v2's ResNet-18 (28 px, clean),
    MedViT-small's MedMNIST-C figures only when ``corrupted``; none on a ``subset`` (published
    figures are full-test-set numbers), which is recorded instead (without its indices).
    """
    from medfm.evaluation.evaluate import MEDMNIST_V2_RESNET18_28

    refs: Dict[str, Any] = {}
    if subset is None and spec.flag in MEDMNIST_V2_RESNET18_28 and getattr(ds, "size", 28) == 28:
        refs["MedMNIST v2 ResNet-18 (28)"] = MEDMNIST_V2_RESNET18_28[spec.flag]
    if subset is None and corrupted and spec.flag in MEDVIT_SMALL_C:
        refs["MedViT-small MedMNIST-C (224 px corruptions)"] = MEDVIT_SMALL_C[spec.flag]
    return {"dataset": spec.name, "flag": spec.flag, "folder": spec.folder, "split": spec.split,
            "size": getattr(ds, "size", None), "data_md5": getattr(ds, "md5", None), "references": refs,
            **({"subset": {k: v for k, v in subset.items() if k != "indices"}} if subset else {})}


def no_data_error(suite: Suite, data_root: Optional[str]) -> MedFMDataError:
    """The one-line error for a suite none of whose datasets is on disk: the data root, the
    datasets looked for and how to get them (MedMNIST's Zenodo record, an image folder's place)."""
    from medfm.data.root import resolve_data_root

    root = resolve_data_root(data_root)
    names = [d.name or d.flag or Path(d.folder).name for d in suite.datasets]
    looked = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    how = []
    flags = [d.flag for d in suite.datasets if d.flag is not None]
    if flags:
        from medfm.data.medmnist_info import INFO  # medfm's one MedMNIST table

        record = str(INFO[flags[0]].get("url", "")).split("/files/")[0] or "Zenodo"
        how.append(f"MedMNIST <flag>[_<size>].npz files from {record} go in {root / 'medmnist'}")
    folders = [d.folder for d in suite.datasets if d.folder is not None]
    if folders:
        how.append(f"image folders in {root}/<folder> (e.g. {folders[0]})")
    return DataFileMissingError(
        f"no data set of suite {suite.name!r} was found under {root} (looked for {looked}); get the data "
        f"({'; '.join(how)}; see the README's Data section) or point --data-root / $MEDFM_DATA at the folder "
        "that holds it")


__all__ = ["DatasetSkipped", "dataset_classes", "classes_on_disk", "check_max_samples", "load_split", "default_size",
           "prepare_dataset", "scored_subset", "dataset_meta", "no_data_error"]
