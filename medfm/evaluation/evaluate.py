"""``medfm eval``: score a classifier checkpoint on a MedMNIST split and write the report."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from medfm.arg_checks import check_number
from medfm.data.errors import EmptySplitError  # (a data error; imported from here too)
from medfm.evaluation.predict import classifier_core, predict_outputs

#: MedMNIST v2 (Yang et al., Scientific Data 2023), Table: ResNet-18 (28) test ACC/AUC.
MEDMNIST_V2_RESNET18_28 = {
    "pneumoniamnist": {"acc": 0.854, "auc": 0.944},
    "breastmnist": {"acc": 0.863, "auc": 0.901},
    "bloodmnist": {"acc": 0.958, "auc": 0.998},
    "dermamnist": {"acc": 0.735, "auc": 0.917},
    "octmnist": {"acc": 0.743, "auc": 0.943},
    "retinamnist": {"acc": 0.524, "auc": 0.717},
    "pathmnist": {"acc": 0.907, "auc": 0.983},
    "chestmnist": {"acc": 0.947, "auc": 0.768},
    "tissuemnist": {"acc": 0.681, "auc": 0.930},
    "organamnist": {"acc": 0.935, "auc": 0.997},
    "organcmnist": {"acc": 0.900, "auc": 0.992},
    "organsmnist": {"acc": 0.782, "auc": 0.972},
}


class ChannelMismatchError(ValueError):
    """A checkpoint's in_chans does not match the dataset's channels."""


def check_split_has_images(ds: Any, dataset: str, split: str, purpose: str = "evaluate") -> None:
    """Refuse a split with no images before a model runs on it (``medfm eval --data`` on an empty split
    ended with torch's "expected a non-empty list of Tensors", a suite with numpy's "cannot reshape
    array of size 0").

    Args:
        ds: the loaded split (anything with ``len``; its ``path``, when it has one, is named).
        dataset, split: named in the message; purpose: what the split was for (``"score"``,
            ``"fit the probe on"``).

    Raises:
        EmptySplitError: one line, e.g. ``the test split of pneumoniamnist (/data/medmnist/pneumoniamnist.npz)
            holds no images: nothing to evaluate``.
    """
    if len(ds) == 0:
        where = f" ({ds.path})" if getattr(ds, "path", None) else ""
        raise EmptySplitError(f"the {split} split of {dataset}{where} holds no images: nothing to {purpose}")


def _check_label_names(model_names, data_names, checkpoint: str, dataset: str) -> None:
    """Refuse scoring a classifier on a data set whose classes are other classes with the same count
    (a PneumoniaMNIST head on BreastMNIST would give meaningless ACC/AUC and exit 0).

    Checkpoints whose label names are the placeholders ``"0", "1", ...`` (built without names)
    are not checked; names are compared case- and whitespace-insensitively.

    Raises:
        ValueError: both sides have real names and they differ (the message lists both).
    """
    def norm(names):
        return [" ".join(str(n).lower().split()) for n in names]

    model_names, data_names = list(model_names or []), list(data_names or [])
    if not model_names or model_names == [str(i) for i in range(len(model_names))]:
        return
    if norm(model_names) != norm(data_names):
        raise ValueError(f"{checkpoint} predicts the classes {model_names} but {dataset}'s classes are {data_names}: "
                         "a head trained for other classes; fine-tune one on this data set first")


def earlier_report(out: Path, is_earlier: Callable[[Dict[str, Any]], bool], what: str, writer: str,
                   keep: Callable[[Path], bool] = lambda rel: False) -> bool:
    """Whether the output folder ``out`` holds an earlier report of the same kind, which the caller
    then replaces as a whole (``medfm eval --data``: :func:`evaluate_checkpoint`; ``--suite``:
    :func:`medfm.evaluation.suites.earlier_suite_report`). Call it before any work is done.

    Args:
        out: the output folder; missing or empty: False.
        is_earlier: whether a parsed ``out/results.json`` is such a report.
        what, writer: named in the error, e.g. ``"evaluation-suite report"``, ``"a suite"``.
        keep: files (paths relative to ``out``) that may lie in ``out`` without a report (e.g. an
            interrupted suite's fine-tuning runs); such a folder gives False.

    Raises:
        NotADirectoryError: ``out`` or a folder above it is a file (:func:`medfm.evaluation.report.check_output_dir`:
            the report folders' one rule and wording, ``cannot write 'out': 'out' is a file, not a folder; choose
            another output folder``; was a ``FileExistsError`` in words of its own, and a file above ``out`` was found
            only when the report was written, after the work).
        FileExistsError: ``out`` is a non-empty folder without such a report (another command's output, the
            user's files), which is neither written into nor deleted.
    """
    from medfm.evaluation.report import check_output_dir

    out = Path(out)
    check_output_dir(out)
    if not out.exists():
        return False
    try:
        res = json.loads((out / "results.json").read_text())
        earlier = isinstance(res, dict) and bool(is_earlier(res))
    except (OSError, ValueError):
        earlier = False
    if earlier:
        return True
    foreign = next((p for p in out.rglob("*") if p.is_file() and not keep(p.relative_to(out))), None)
    if foreign is not None:
        raise FileExistsError(f"output {out} is not empty and holds no earlier {what} (e.g. "
                              f"{foreign.relative_to(out)}); {writer} replaces only its own earlier reports: choose "
                              "another output folder or empty this one")
    return False


def _is_data_report(res: Dict[str, Any], protocol: Optional[str]) -> bool:
    """``results.json`` of :func:`evaluate_checkpoint` (``protocol`` None: a classification report whose
    ``meta`` names no protocol; a suite's per-dataset reports name theirs) or of
    :func:`medfm.evaluation.zeroshot.zeroshot_eval` (``protocol`` "zeroshot")."""
    meta = res.get("meta")
    return res.get("kind") == "classification" and isinstance(meta, dict) and meta.get("protocol") == protocol


def earlier_data_report(out: Path, checkpoint_dir: Path, protocol: Optional[str] = None) -> bool:
    """Whether ``out`` holds an earlier ``medfm eval --data`` evaluation (``protocol`` None) or
    ``--protocol zeroshot`` one, replaced as a whole by :func:`write_scored_split` (:func:`earlier_report`).

    Raises:
        FileExistsError: ``out`` is the checkpoint folder, holds it, or holds a checkpoint
            (``config.json``), whatever else it holds; or a non-empty folder holding anything but an
            earlier ``--data`` evaluation (another evaluation's plots, a suite's folders, the user's files).
        NotADirectoryError: ``out`` or a folder above it is a file (:func:`earlier_report`).
    """
    out, ckpt = Path(out), Path(checkpoint_dir)
    command = "`medfm eval --data`" + (f" --protocol {protocol}" if protocol else "")
    if out.exists():
        here, there = out.resolve(), ckpt.resolve()
        held = ("is the checkpoint evaluated" if here == there else "holds the checkpoint evaluated"
                if here in there.parents else "holds a checkpoint (config.json)" if (out / "config.json").is_file()
                else "")
        if held:
            raise FileExistsError(f"output {out} {held}; {command} replaces its output folder as a whole: "
                                  f"choose another output folder (default: <checkpoint>/"
                                  f"{'zeroshot' if protocol else 'eval'}-<flag>-<split>)")
    return earlier_report(out, lambda res: _is_data_report(res, protocol), f"{command} report", command)


def check_scoring_request(dataset: str, split: str, size: Optional[int],
                          batch_size: int) -> Tuple[int, Dict[str, Any]]:
    """Check what a scoring command's MedMNIST flag decides, before the checkpoint is resolved (a hub download)
    and loaded: ``batch_size``, the flag, the split and, when given, the ``size`` (the default is the encoder's,
    known only then); the early checks of :func:`evaluate_checkpoint` and
    :func:`medfm.evaluation.zeroshot.zeroshot_eval`.

    Returns:
        ``(batch_size, info)``: ``batch_size`` as an ``int``, the flag's
        :func:`medfm.data.medmnist_info.dataset_info`.

    Raises:
        ValueError: ``batch_size`` not an integer >= 1. UnknownDatasetError, UnknownSplitError,
            UnsupportedSizeError: an unknown flag, a split MedMNIST does not have
            (:func:`medfm.data.medmnist.check_medmnist_split`) or a ``size`` the flag is not released at.
    """
    from medfm.data.medmnist import check_medmnist_split, dataset_info, npz_url

    batch_size = check_number("batch_size", batch_size, ge=1, integer=True)
    info = dataset_info(dataset)
    check_medmnist_split(dataset, split)
    if size is not None:
        npz_url(dataset, size)
    return batch_size, info


def default_checkpoint_size(ckpt_dir: Path, dataset_flag: str, model_name: str) -> Optional[int]:
    """The image encoder's ``img_size`` that a checkpoint's ``config.json`` records (``preprocessing``, written by
    :func:`medfm.hub.preprocessing_of`), checked to be a size MedMNIST releases ``dataset_flag`` at, without
    loading the model: the default ``size`` of :func:`evaluate_checkpoint` (``model_name="classification"``) and
    :func:`medfm.evaluation.zeroshot.zeroshot_eval` (``"clip"``). None when the config records no size, or names
    a model other than ``model_name`` (the caller loads it and says what it is: a 32 px SimCLR checkpoint is "not a
    classification checkpoint", not a size to change); the loaded encoder's ``img_size`` is used then.

    Raises:
        CheckpointError: no readable ``config.json`` (:func:`medfm.hub.load_config`).
        UnsupportedSizeError: a size the flag is not released at, named as the default (``--size`` / ``size``
            chooses another).
    """
    from medfm.data.errors import UnsupportedSizeError
    from medfm.data.medmnist import npz_url
    from medfm.hub import load_config

    cfg = load_config(ckpt_dir)
    pre = cfg.get("preprocessing") if cfg.get("name") == model_name else None
    size = pre.get("img_size") if isinstance(pre, dict) else None
    if not isinstance(size, int) or isinstance(size, bool):
        return None
    try:
        npz_url(dataset_flag, size)
    except UnsupportedSizeError as err:
        raise UnsupportedSizeError(f"{err} (the default size is the checkpoint's image encoder img_size, {size}; "
                                   "choose another with --size, size=)") from None
    return size


def write_scored_split(output: Path, ds: Any, scores: np.ndarray, meta: Dict[str, Any],
                       extra_warnings: Sequence[str] = (), logits: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Write one scored split's ``predictions.npz`` (``scores`` (N, K) float32, ``labels``, and ``logits`` (N, K)
    float32 when given) and its classification report into ``output``, whole: beside it, then renamed into place
    (:func:`medfm.io.atomic_dir`), replacing an earlier evaluation there (check it first with
    :func:`earlier_data_report`); a failure leaves ``output`` as it was. ``logits``: the model's outputs before
    the sigmoid/softmax that made ``scores``; the AUC then ranks their log-odds
    (:func:`medfm.evaluation.metrics.logit_ranking`: no ties from float32 saturation).

    Returns:
        :func:`medfm.evaluation.report.write_classification_report`'s results.

    Raises:
        TypeError: ``extra_warnings`` not a list of strings (a string was listed letter by letter), and the
            other errors of :func:`medfm.evaluation.report.write_classification_report`; ``output`` is then left
            as it was.
    """
    from medfm.evaluation.report import write_classification_report
    from medfm.io import atomic_dir

    with atomic_dir(output) as stage:  # renamed to output once complete
        with open(stage / "predictions.npz", "wb") as fh:
            np.savez(fh, scores=scores, labels=ds.labels, **({} if logits is None else {"logits": logits}))
        res = write_classification_report(stage, ds.labels, scores, ds.task, ds.label_names, meta,
                                          extra_warnings=extra_warnings, logits=logits)
    return res


def evaluate_checkpoint(checkpoint: str, dataset: str, split: str = "test", size: Optional[int] = None,
                        data_root: Optional[str] = None, output: Optional[Path] = None,
                        batch_size: int = 256) -> Dict[str, Any]:
    """Evaluate a classifier checkpoint on MedMNIST ``dataset``/``split``.

    Writes ``results.json``, ``report.md``, PNGs and ``predictions.npz`` (``scores`` (N, K)
    float32, ``labels``) into ``output`` (default ``<checkpoint>/eval-<dataset>-<split>``), whole:
    they are written beside it and renamed into place (:func:`medfm.io.atomic_dir`), so an earlier
    ``--data`` evaluation there is replaced as a whole (its files used to stay next to the new ones)
    and a failed run leaves ``output`` as it was.

    A ``size`` other than the encoder's ``img_size`` is scored, with a warning in ``results.json``,
    the report and the console (:func:`size_warnings`).

    Raises:
        CheckpointError: unreadable checkpoint; ChannelMismatchError: in_chans vs data;
        FileExistsError: ``output`` holds a checkpoint, or is a non-empty folder holding anything but an earlier
            ``--data`` evaluation (:func:`earlier_data_report`); checked before the model or data are loaded.
        NotADirectoryError: ``output`` is a file or lies under one (:func:`earlier_data_report`), checked then too.
        ValueError: a checkpoint whose classes do not match the dataset's (count, task or label
            names), or a 2D checkpoint on a 3D set (or the reverse); medfm data errors.
        EmptySplitError: the split holds no images (:func:`check_split_has_images`).
        ValueError: ``batch_size`` not an integer >= 1, checked before anything is loaded (it was
            checked by :func:`predict_scores`, after the checkpoint and the data had been loaded).
        UnknownDatasetError, UnknownSplitError, UnsupportedSizeError: an unknown flag, a split MedMNIST does not
            have (``'tset'``: "did you mean 'test'?", :func:`medfm.data.medmnist.check_medmnist_split`) or a
            ``size`` the flag is not released at, all checked before the checkpoint is resolved (they were found
            by :class:`~medfm.data.MedMNISTDataset`, once the model was loaded); the default ``size``, the encoder's
            ``img_size`` as ``config.json`` records it (:func:`default_checkpoint_size`), once the checkpoint is
            resolved, before the model is loaded (it was checked once the model was loaded).
    """
    from medfm.data import MedMNISTDataset
    from medfm.evaluation.array_sets import ProgressSet, image_bar
    from medfm.evaluation.report import checkpoint_hash
    from medfm.hub import from_pretrained, resolve_checkpoint

    batch_size, _ = check_scoring_request(dataset, split, size, batch_size)  # before the checkpoint is loaded
    ckpt_dir = resolve_checkpoint(checkpoint)
    output = Path(output) if output else ckpt_dir / f"eval-{dataset}-{split}"
    earlier_data_report(output, ckpt_dir)
    size = default_checkpoint_size(ckpt_dir, dataset, "classification") if size is None else size  # before loading
    model = from_pretrained(ckpt_dir)
    core = classifier_core(model)
    if getattr(core, "medfm_spec", {}).get("name") != "classification":
        raise ValueError(f"{checkpoint} is not a classification checkpoint; `medfm eval --data` needs one")
    enc = core.encoder
    ds = MedMNISTDataset(dataset, split=split, size=size or enc.img_size, data_root=data_root)
    if ds.is_3d != (getattr(enc, "spatial_dims", 2) == 3):
        have, want = ("3D volume", "2D image") if ds.is_3d else ("2D image", "3D volume")
        raise ValueError(f"{dataset} is a {have} data set but {checkpoint} holds a {want} encoder "
                         f"({enc.spatial_dims}D); evaluate it on a {want.split()[0]} set")
    if ds.n_channels != enc.in_chans:
        raise ChannelMismatchError(
            f"checkpoint expects {enc.in_chans}-channel images but {dataset} has {ds.n_channels} channel(s)")
    if core.num_classes != ds.num_classes or core.task != ds.task:
        raise ValueError(f"checkpoint predicts {core.num_classes} classes ({core.task}) but {dataset} has "
                         f"{ds.num_classes} ({ds.task})")
    _check_label_names(core.label_names, ds.label_names, checkpoint, dataset)
    check_split_has_images(ds, dataset, split)
    with image_bar(len(ds), f"{dataset} {split}") as bar:
        scores, logits = predict_outputs(model, ProgressSet(ds, bar), batch_size=batch_size)
    meta = {"checkpoint": str(ckpt_dir), "checkpoint_sha256": checkpoint_hash(ckpt_dir)
            if (ckpt_dir / "model.safetensors").is_file() else None,
            "dataset": dataset, "split": split, "size": ds.size, "data_md5": ds.md5, "n_samples": len(ds),
            "batch_size": batch_size,
            "references": {"MedMNIST v2 ResNet-18 (28)": MEDMNIST_V2_RESNET18_28.get(dataset)}}
    return write_scored_split(output, ds, scores, meta, size_warnings(ds.size, enc, ds.is_3d), logits=logits)


def size_warnings(size: int, encoder: Any, is_3d: bool) -> List[str]:
    """A warning when the evaluated MedMNIST size is not the encoder's ``img_size``: the model then
    sees its structures at another scale (a 28^3 AdrenalMNIST3D classifier scored on the 64^3 file
    gave test ACC 0.23 against 0.81, with no word said).

    Returns:
        ``[]`` or one warning string.
    """
    trained = getattr(encoder, "img_size", None)
    if trained is None or int(size) == int(trained):
        return []
    unit = "voxels a side" if is_3d else "pixels a side"
    return [f"evaluated at size {size} but the encoder was built for {trained} {unit}: the model sees its inputs "
            f"at another scale than it was trained on (pass --size {trained}, or fine-tune at {size})"]
