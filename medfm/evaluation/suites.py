"""Declarative evaluation suites: ``medfm eval --suite eval_suites/<suite>.yaml <checkpoint>...``.

What a suite file holds and how it is read and overridden (:class:`Suite`, :func:`load_suite`,
:func:`suite_overrides`) is :mod:`medfm.evaluation.suite_spec`; this module runs one:
:func:`run_suite` evaluates every dataset and writes ``results.json``, ``report.md`` and PNGs
(per dataset: the clean classification report of
:func:`medfm.evaluation.report.write_classification_report`, error-vs-severity plot and CAM grid).

Checkpoints per dataset (:mod:`medfm.evaluation.suite_checkpoints`): a dataset's own ``checkpoint``
key wins; otherwise the checkpoints given on the command line are tried in order, the first that
fits is used. Checkpoints no dataset used are listed in ``results.json`` (``unused_checkpoints``)
and the report. Runs that fit on labels record how many per class (``train_labels``) and warn when
a class has fewer than :data:`FEW_LABELS`.
Datasets that cannot be evaluated (file not on disk, no matching checkpoint, 3D data for a 2D
classifier) are reported as skipped with the reason (those whose data are not on
disk also with ``"missing_data": true``); configuration errors (misspelt key, unknown flag or
corruption, a matching checkpoint whose in_chans differs from the data) stop the run with one
clear line. A suite none of whose datasets is on disk stops too (:func:`run_suite`): a run that
evaluated nothing used to exit 0 with an empty summary.

The output folder receives the evaluation whole (written beside it, then renamed): an earlier
suite evaluation there is replaced, any other non-empty folder refused (:func:`earlier_suite_report`).
A dataset's ``max_samples`` scores a fixed class-stratified subset of its split
(:func:`scored_subset_indices`), recorded in ``results.json`` and stated in the reports.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from medfm.config import ConfigError, to_dict
from medfm.data.errors import DataFileMissingError, MedFMDataError
from medfm.evaluation.array_sets import ArraySet, ProgressSet
from medfm.evaluation.protocols import PROTOCOLS
from medfm.evaluation.subsets import SUBSET_SEED, scored_subset_indices
from medfm.evaluation.suite_checkpoints import CheckpointCache, pick_checkpoint
from medfm.evaluation.suite_report import MEDVIT_SMALL_C
from medfm.evaluation.suite_spec import (SUITE_SCHEMA_VERSION, CamSpec, CorruptionSpec, DatasetSpec, MetricsSpec,
                                         ProtocolSpec, Suite, load_suite, suite_overrides)


# -- datasets --------------------------------------------------------------------------------------
def _scored_subset(ds: Any, max_samples: Optional[int]) -> Tuple[Any, Optional[Dict[str, Any]]]:
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


def _load_dataset(spec: DatasetSpec, split: str, size: Optional[int], data_root: Optional[str], as_rgb: bool) -> Any:
    if spec.flag is not None:
        from medfm.data.medmnist import MedMNISTDataset

        return MedMNISTDataset(spec.flag, split=split, size=size or 28, data_root=data_root, as_rgb=as_rgb)
    from medfm.data.imagefolder import ImageFolderDataset

    return ImageFolderDataset(spec.folder, split=split, size=size, in_chans=3 if as_rgb else None,
                              data_root=data_root, name=spec.name, split_rule=spec.split_rule)


def _default_size(spec: DatasetSpec, encoder: Any) -> Optional[int]:
    if spec.size is not None:
        return spec.size
    if spec.flag is None:
        return encoder.img_size
    from medfm.data.medmnist import available_sizes

    return encoder.img_size if encoder.img_size in available_sizes(spec.flag) else 28


# -- running -----------------------------------------------------------------------------------------
def _dataset_meta(spec: DatasetSpec, ds: Any, corrupted: bool, subset: Optional[Dict[str, Any]]) -> Dict[str, Any]:
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


def _scoring(protocol: str, model: Any, core: Any, encoder: Any, train: Any, spec: "Suite",
             ds: Any, val: Any = None, finetune: Optional[Dict[str, Any]] = None, train_split: str = "train",
             progress: bool = True) -> Tuple[Any, List[Tuple[str, Optional[float], Any, Any, Dict[str, Any]]]]:
    """``(embed, heads)``: ``embed(dataset) -> array``; each head
    ``(run, fraction, fn(array) -> scores, cam_model, extra results)``; the extra results of a
    protocol that fits on labels hold ``train_labels`` (:func:`_train_label_counts`).

    ``finetune`` (protocol ``finetune``): ``{"checkpoint", "sha", "flag", "size", "workdir", "data_root"}``.
    ``progress``: tqdm bars over the feature passes of the train and val splits.
    """
    from medfm.evaluation import protocols as P
    from medfm.evaluation.predict import predict_scores

    bs = spec.batch_size
    if protocol == "as-is":
        return (lambda d: predict_scores(model, d, batch_size=bs)), [("as-is", None, lambda s: s, model, {})]
    if protocol == "finetune":
        from medfm.data.medmnist import medmnist_path
        from medfm.evaluation.finetune_protocol import finetune_classifier, finetune_recipe
        from medfm.training.runs import finetune_label_indices

        with np.load(medmnist_path(finetune["flag"], finetune["size"], finetune["data_root"])) as npz:
            all_train = np.asarray(npz["train_labels"])
        heads = []
        for frac in spec.protocol.label_fractions:
            run = f"finetune-f{frac:g}"
            clf = finetune_classifier(encoder, finetune["checkpoint"], finetune["flag"], finetune["size"], frac,
                                      Path(finetune["workdir"]) / run / "train", spec.protocol.finetune,
                                      seed=spec.protocol.seed, data_root=finetune["data_root"],
                                      checkpoint_sha256=finetune.get("sha"))
            recipe = finetune_recipe(encoder, finetune["checkpoint"], finetune["flag"], finetune["size"], frac,
                                     spec.protocol.finetune, spec.protocol.seed)
            kept = all_train[finetune_label_indices(recipe, all_train)]  # the draw run_finetune made
            heads.append((run, frac, lambda d, clf=clf: predict_scores(clf, d, batch_size=bs), clf,
                          {"finetune_checkpoint": str(Path(finetune["workdir"]) / run / "train"),
                           "train_labels": _train_label_counts(kept, ds.task, ds.label_names, "train", "fine-tuned")}))
        return (lambda d: d), heads
    name = getattr(ds, "flag", None) or getattr(ds, "name", None) or "data"  # image folders: their name
    def features(data: Any, split: str) -> np.ndarray:
        return P.extract_features(encoder, data, bs, desc=f"{name} {split} features" if progress else None)

    ftr = features(train, "train")
    ytr = P.probe_labels(train)
    heads = []
    pr = spec.protocol
    if protocol == "linear" and pr.linear_c == "val":
        fval, yval = features(val, "val"), P.probe_labels(val)
    for frac in pr.label_fractions:
        keep = P.subset_indices(ytr, frac, pr.seed)
        run = f"{protocol}-f{frac:g}"
        counts = _train_label_counts(ytr[keep], ds.task, ds.label_names, train_split,
                                     "linear probe fitted" if protocol == "linear" else "kNN neighbours drawn")
        if protocol == "linear":
            c, extra = pr.linear_c, {"probe_c": pr.linear_c}
            if c == "val":
                c, accs = P.select_probe_c(ftr[keep], ytr[keep], fval, yval, ds.task, ds.num_classes, seed=pr.seed)
                extra = {"probe_c": c, "probe_c_val_acc": {f"{k:g}": round(v, 4) for k, v in accs.items()}}
            probe = P.fit_linear_probe(ftr[keep], ytr[keep], ds.task, ds.num_classes, C=c, seed=pr.seed)
            heads.append((run, frac, probe.predict, probe.to_classifier(encoder, ds.label_names),
                          {**extra, "train_labels": counts}))
        else:
            fk, yk = ftr[keep], ytr[keep]
            heads.append((run, frac, lambda f, fk=fk, yk=yk: P.knn_scores(
                fk, yk, f, ds.num_classes, k=pr.knn_k, temperature=pr.knn_temperature, task=ds.task), encoder,
                {"train_labels": counts}))
    return (lambda d: P.extract_features(encoder, d, bs)), heads


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished child processes (workers)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return float("nan")
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


class _Stopwatch:
    """Wall and CPU seconds per stage (CPU time stays meaningful on a shared, loaded machine)."""

    def __init__(self) -> None:
        self.stages: Dict[str, Dict[str, float]] = {}
        self._start = self._last = (time.perf_counter(), _cpu_seconds())

    def lap(self, stage: str) -> None:
        now = (time.perf_counter(), _cpu_seconds())
        self.stages[stage] = {"wall_s": now[0] - self._last[0], "cpu_s": now[1] - self._last[1]}
        self._last = now

    def summary(self) -> Dict[str, Dict[str, float]]:
        return {**self.stages, "total": {"wall_s": self._last[0] - self._start[0], "cpu_s": self._last[1] - self._start[1]}}


class _Skip(Exception):
    """A dataset that cannot be evaluated; the message is the reason shown in the report.

    ``missing``: its data are not on disk (no MedMNIST file at any size asked for, no image
    folder); data that are there but unreadable are not missing.
    """

    def __init__(self, reason: str, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def _classes(spec: DatasetSpec, data_root: Optional[str]) -> Tuple[str, List[str], bool, Optional[int]]:
    """``(task, label_names, is_3d, n_channels or None)`` without loading the images."""
    if spec.flag is not None:
        from medfm.data.medmnist import dataset_info

        info = dataset_info(spec.flag)
        return info["task"], list(info["label_names"]), info["is_3d"], info["n_channels"]
    from medfm.data.imagefolder import folder_classes

    return "multi-class", folder_classes(spec.folder, data_root), False, None


def _prepare(spec: DatasetSpec, suite: Suite, checkpoints: Sequence[str], models: CheckpointCache,
             data_root: Optional[str]) -> Dict[str, Any]:
    """Choose the checkpoint and load the data; raises :class:`_Skip` with the reason."""
    from medfm.evaluation.evaluate import ChannelMismatchError

    protocol = suite.protocol.name
    try:
        task, names, is_3d, n_ch = _classes(spec, data_root)
    except MedFMDataError as err:  # an image folder that is not there is missing data
        raise _Skip(str(err), missing=isinstance(err, DataFileMissingError)) from None
    if spec.flag is not None:  # data on disk? (checked before any checkpoint is matched)
        from medfm.data.medmnist import available_sizes, medmnist_path

        paths = [medmnist_path(spec.flag, s, data_root) for s in ([spec.size] if spec.size else available_sizes(spec.flag))]
        if not any(p.is_file() for p in paths):
            raise _Skip(f"not on disk: no {' or '.join(p.name for p in paths[:2])}{' ...' if len(paths) > 2 else ''} "
                        f"in {paths[0].parent}", missing=True)
    ckpt, why = pick_checkpoint(spec, checkpoints, models, protocol, task, names, is_3d)
    if ckpt is None:
        raise _Skip(why)
    model, core, sha = models.get(ckpt)
    encoder = getattr(core, "encoder", None)
    if encoder is None:
        raise _Skip(f"checkpoint {ckpt} holds no encoder")
    enc_3d = getattr(encoder, "spatial_dims", 2) == 3
    if protocol == "finetune" and (spec.flag is None or is_3d or enc_3d):
        raise _Skip("the finetune protocol fine-tunes 2D classifiers on MedMNIST 2D sets only")
    if is_3d and not enc_3d and protocol == "as-is":
        raise _Skip("3D volumes but the checkpoint's classifier is 2D (use --protocol linear/knn for 2.5D "
                    "slice features, or a 3D encoder)")
    if enc_3d and not is_3d:
        raise _Skip("2D images but the checkpoint's encoder is 3D")

    def channels_ok(n: int) -> bool:
        if n == encoder.in_chans:
            return False
        if protocol == "finetune":
            raise _Skip(f"the encoder takes {encoder.in_chans} channel(s), {spec.name} has {n}: cannot fine-tune")
        if protocol == "as-is":
            raise ChannelMismatchError(f"checkpoint {ckpt} expects {encoder.in_chans}-channel images but "
                                       f"{spec.name} has {n} channel(s)")
        if n == 3:
            raise _Skip(f"RGB data but the encoder takes {encoder.in_chans} channel(s)")
        return True  # grey data, RGB encoder: repeat channels (as_rgb)

    as_rgb = channels_ok(n_ch) if n_ch is not None else False
    size = _default_size(spec, encoder)
    if getattr(encoder, "fixed_size", False) and size != encoder.img_size:
        raise _Skip(f"the encoder takes only {encoder.img_size} px inputs; the data is {size} px")
    try:
        ds = _load_dataset(spec, spec.split, size, data_root, as_rgb)
        if n_ch is None and channels_ok(ds.n_channels):  # image folder: channels known once loaded
            as_rgb = True
            ds = _load_dataset(spec, spec.split, size, data_root, True)
        train = _load_dataset(spec, spec.train_split, size, data_root, as_rgb) if protocol in ("linear", "knn") else None
        val = (_load_dataset(spec, spec.val_split, size, data_root, as_rgb)
               if protocol == "linear" and suite.protocol.linear_c == "val" else None)
    except MedFMDataError as err:
        raise _Skip(str(err)) from None
    return {"checkpoint": ckpt, "model": model, "core": core, "sha": sha, "encoder": encoder, "ds": ds, "train": train,
            "val": val, "size": size}


#: a class (or, multi-label, a label's positives) with fewer training labels than this is named in a warning
FEW_LABELS = 5


def _train_label_counts(labels: np.ndarray, task: str, names: Sequence[str], split: str,
                        what: str) -> Dict[str, Any]:
    """``{"split", "n", "per_class": {name: count}, "warnings": [...]}`` of the labels a run was fitted on.

    ``labels``: ``(n,)`` class indices, or ``(n, L)`` 0/1 for multi-label (counts are positives).
    A class with fewer than :data:`FEW_LABELS` labels is named in a warning (1 % of BreastMNIST's
    546 training images is 5 labels, 1 of them malignant: the report used to say nothing).
    """
    y = np.asarray(labels)
    if task == "multi-label, binary-class":
        counts = y.reshape(len(y), -1).sum(axis=0).astype(int)
    else:
        counts = np.bincount(y.reshape(-1).astype(np.int64), minlength=len(names))
    per = {str(n): int(c) for n, c in zip(names, counts)}
    few = {k: v for k, v in per.items() if v < FEW_LABELS}
    warnings = []
    if few:
        kind = "positive(s)" if task == "multi-label, binary-class" else "label(s)"
        warnings.append(f"{what} on {len(y)} {split} labels: " + ", ".join(f"{k!r} has {v} {kind}" for k, v in few.items())
                        + f" (fewer than {FEW_LABELS}): scores at this label fraction rest on very few examples")
    return {"split": split, "n": int(len(y)), "per_class": per, "warnings": warnings}


def _corruption_jobs(spec: DatasetSpec, cs: CorruptionSpec, ds: Any) -> Tuple[List[str], Dict[str, str]]:
    """Corruptions to run and ``{name: reason}`` for the ones skipped."""
    from medfm.data.corruptions import corrupt_images, list_corruptions

    defined = list_corruptions(spec.flag)
    wanted = defined if cs.names == "all" else list(cs.names)
    skipped = {n: f"medmnistc defines it for other datasets, not {spec.flag}" for n in wanted if n not in defined}
    run = [n for n in wanted if n in defined]
    if cs.resolution == "native":  # some corruptions cannot work at small sizes: probe them on 2 images
        for n in list(run):
            try:
                corrupt_images(ds.images[:2], spec.flag, n, max(cs.severities), cs.seed, "native")
            except RuntimeError as err:
                skipped[n] = f"fails at {ds.size} px ({err})"
                run.remove(n)
    return run, skipped


#: timing stages per protocol: (fitting on labels, forward pass over the scored images, applying the
#: heads to its outputs); None: no such stage. "clean" used to time the probe's train features and fit
#: too, and for finetune the fine-tuning itself, while its inference fell under "metrics reports".
_STAGES: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {
    "as-is": (None, "inference", None),
    "linear": ("train_features_and_probe_fit", "features", "probe_scoring"),
    "knn": ("train_features", "features", "knn_scoring"),
    "finetune": ("fine_tuning", None, "finetuned_inference"),
}


def _evaluate_dataset(spec: DatasetSpec, suite: Suite, checkpoints: Sequence[str], models: CheckpointCache, out: Path,
                      data_root: Optional[str], cache_dir: Optional[str], progress: bool,
                      work: Optional[Path] = None) -> Dict[str, Any]:
    """Evaluate one dataset (clean, corrupted, CAMs); returns its ``results.json`` entry.

    Reports go under ``out`` (the run's staging folder); fine-tuning runs of the ``finetune``
    protocol under ``work`` (default ``out``), the final output folder, where a rerun finds them.
    ``timing``: wall and CPU seconds per stage named by what it covers (:data:`_STAGES`).
    """
    from tqdm.auto import tqdm

    from medfm.data.corruptions import corrupted_sets, corruption_datasets, describe_method, resample_roundtrip
    from medfm.evaluation.report import write_classification_report
    from medfm.evaluation.robustness import robustness_markdown, robustness_summary
    from medfm.io import atomic_write_json, atomic_write_text

    def bar(images: int, what: str, on: bool = True) -> Any:  # a bar over images the model runs on
        return tqdm(total=images, desc=f"{spec.name} {what}", unit="img", leave=False, disable=not (progress and on))

    clock = _Stopwatch()
    entry: Dict[str, Any] = {"name": spec.name, "flag": spec.flag, "folder": spec.folder, "split": spec.split,
                             "protocol": suite.protocol.name}
    try:
        prep = _prepare(spec, suite, checkpoints, models, data_root)
    except _Skip as skip:
        return {**entry, "status": "skipped", "reason": str(skip), **({"missing_data": True} if skip.missing else {})}
    ds, subset = _scored_subset(prep["ds"], spec.max_samples)
    clock.lap("load")
    entry.update({"status": "ok", "checkpoint": prep["checkpoint"], "checkpoint_sha256": prep["sha"],
                  "size": ds.size, "n_samples": len(ds), "data_md5": ds.md5, **({"subset": subset} if subset else {}),
                  "runs": []})
    finetune = {"checkpoint": prep["checkpoint"], "sha": prep["sha"], "flag": spec.flag, "size": prep["size"],
                "workdir": (work or out) / spec.name, "data_root": data_root}
    fit_stage, forward, score_stage = _STAGES[suite.protocol.name]
    embed, heads = _scoring(suite.protocol.name, prep["model"], prep["core"], prep["encoder"], prep["train"], suite, ds,
                            val=prep["val"], finetune=finetune, train_split=spec.train_split, progress=progress)
    if fit_stage:
        clock.lap(fit_stage)

    def forward_pass(images: np.ndarray, counter: Any) -> Any:  # embed(); counted where the model runs here
        data = ArraySet(images, ds)
        return embed(ProgressSet(data, counter) if forward else data)

    with bar(len(ds), f"{spec.split} {forward}", on=bool(forward)) as b:
        clean = forward_pass(ds.images, b)
    if forward:
        clock.lap(f"clean_{forward}")
    cs = suite.corruptions if spec.corruptions else None
    corrupted: Dict[Tuple[str, int], Any] = {}
    control = None
    if cs is not None and (spec.flag is None or spec.flag not in corruption_datasets()):
        entry["corruptions"] = {"skipped": f"medmnistc defines no corruptions for {spec.name}"}
    elif cs is not None:
        run, skipped = _corruption_jobs(spec, cs, ds)
        jobs = [(c, s) for c in run for s in cs.severities]
        sets, stats = corrupted_sets(ds.images, spec.flag, jobs, size=ds.size, seed=cs.seed, resolution=cs.resolution,
                                     cache_dir=cache_dir,
                                     source_md5=ds.md5, workers=cs.workers, progress=progress,
                                     indices=None if subset is None else subset["indices"])  # full-split seeds
        clock.lap("corruption_generation")
        with bar((len(sets) + 1) * len(ds), f"corrupted {forward}", on=bool(forward)) as b:
            corrupted = {job: forward_pass(img, b) for job, img in sets.items()}
            control = forward_pass(resample_roundtrip(ds.images, cs.resolution), b)
        if forward:
            clock.lap(f"corrupted_{forward}")
        entry["corruptions"] = {"method": describe_method(cs.resolution, cs.seed), "resolution": cs.resolution,
                                "severities": list(cs.severities), "run": run, "skipped": skipped, "cache": stats,
                                "images_scored": len(jobs) * len(ds)}
    scored = []  # per head: clean scores, {corruption: (S, N, K) scores}, control scores
    for run_name, _, head, _, _ in heads:
        # finetune (no forward stage): the heads run the fine-tuned model on image sets, counted here
        with bar(len(ds) * (1 + len(corrupted) + bool(corrupted)), f"{run_name} inference", on=not forward) as b:
            score = head if forward else (lambda data, head=head, b=b: head(ProgressSet(data, b)))
            by_c: Dict[str, List[np.ndarray]] = {}
            for (c, s), emb in corrupted.items():
                by_c.setdefault(c, []).append(score(emb))
            scored.append((score(clean), {c: np.stack(v) for c, v in by_c.items()}, score(control) if corrupted else None))
    if score_stage:
        clock.lap(score_stage)
    meta = {**_dataset_meta(spec, ds, bool(corrupted), subset), "checkpoint": prep["checkpoint"],
            "checkpoint_sha256": prep["sha"], "protocol": suite.protocol.name}
    m = suite.metrics
    for (run_name, frac, head, cam_model, extra), (scores, by_corruption, control_scores) in zip(heads, scored):
        rdir = out / spec.name if len(heads) == 1 else out / spec.name / run_name
        train_labels = extra.get("train_labels")
        fit_warnings = list(train_labels.pop("warnings", [])) if train_labels else []
        run_meta = {**meta, "label_fraction": frac, **({"train_labels": train_labels} if train_labels else {}),
                    **({"probe_c": extra["probe_c"]} if "probe_c" in extra else {})}
        res = write_classification_report(rdir, ds.labels, scores, ds.task, ds.label_names, run_meta,
                                          threshold=m.threshold, n_boot=m.n_boot, n_bins=m.ece_bins,
                                          extra_warnings=fit_warnings)
        run_entry = {"run": run_name, "label_fraction": frac, "dir": str(rdir.relative_to(out)),
                     "metrics": {k: res["metrics"][k] for k in ("acc", "auc", "balanced_acc", "ece")},
                     "ci": res["ci"], "per_class_recall": res["metrics"]["per_class_recall"], **extra,
                     **({"warnings": fit_warnings} if fit_warnings else {})}
        if corrupted:
            run_entry["robustness"] = robustness_summary(
                ds.labels, scores, by_corruption, control_scores, ds.task, spec.flag,
                list(cs.severities), rdir / "error_vs_severity.png", threshold=m.threshold, title=f"{spec.name} ({run_name})")
            res["robustness"] = {**run_entry["robustness"], "method": entry["corruptions"]["method"]}
            res["files"] = res["files"] + ["error_vs_severity.png"]
            atomic_write_text(rdir / "report.md", (rdir / "report.md").read_text() + "\n## MedMNIST-C\n\n"
                              + entry["corruptions"]["method"] + "\n\n" + robustness_markdown(run_entry["robustness"])
                              + "\n![error_vs_severity](error_vs_severity.png)\n")
        if suite.cam.enabled:
            run_entry["cam"] = _cam(cam_model, ds, rdir, suite.cam, has_head=suite.protocol.name != "knn")
            if "path" in run_entry["cam"]:  # listed in results.json and shown in report.md (it was only listed)
                res["files"] = res["files"] + ["cam_grid.png"]
                atomic_write_text(rdir / "report.md", (rdir / "report.md").read_text() + "\n## Class activation maps\n\n"
                                  + f"{', '.join(run_entry['cam']['methods'])}\n\n![cam_grid](cam_grid.png)\n")
        run_entry["files"] = [f for f in res["files"] if f.endswith(".png")]
        res["corruptions"] = entry.get("corruptions")
        atomic_write_json(rdir / "results.json", res)
        entry["runs"].append(run_entry)
    clock.lap("metrics_reports")
    entry["timing"] = clock.summary()
    return entry


def _cam(model: Any, ds: Any, rdir: Path, spec: CamSpec, has_head: bool) -> Dict[str, Any]:
    from medfm.evaluation.cam import cam_grid

    methods = tuple(spec.methods) if has_head else tuple(m for m in spec.methods if m == "eigencam")
    if not methods:
        return {"skipped": "no CAM method applies (Grad-CAM needs a classifier head)"}
    try:
        info = cam_grid(model, ds, rdir / "cam_grid.png", per_class=spec.per_class, seed=spec.seed, methods=methods)
    except Exception as err:  # an explanation failure must not lose the benchmark numbers
        return {"error": f"{type(err).__name__}: {err}"}
    return {"path": "cam_grid.png", "methods": list(methods), "indices": info["indices"]}


def _no_data_error(suite: Suite, data_root: Optional[str]) -> MedFMDataError:
    """The one-line error for a suite none of whose datasets is on disk: the data root, the
    datasets looked for and how to get them (MedMNIST's Zenodo record, an image folder's place)."""
    from medfm.data.root import resolve_data_root

    root = resolve_data_root(data_root)
    names = [d.name or d.flag or Path(d.folder).name for d in suite.datasets]
    looked = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    how = []
    flags = [d.flag for d in suite.datasets if d.flag is not None]
    if flags:
        from medmnist.info import INFO

        record = str(INFO[flags[0]].get("url", "")).split("/files/")[0] or "Zenodo"
        how.append(f"MedMNIST <flag>[_<size>].npz files from {record} go in {root / 'medmnist'}")
    folders = [d.folder for d in suite.datasets if d.folder is not None]
    if folders:
        how.append(f"image folders in {root}/<folder> (e.g. {folders[0]})")
    return DataFileMissingError(
        f"no data set of suite {suite.name!r} was found under {root} (looked for {looked}); get the data "
        f"({'; '.join(how)}; see the README's Data section) or point --data-root / $MEDFM_DATA at the folder "
        "that holds it")


def _check_protocol_splits(suite: Suite) -> None:
    """Refuse dataset splits the protocol cannot honour:

    - ``linear_c: val`` (``--probe-c val``) for a dataset without a val split to choose C on (one
      whose scored ``split`` is ``val`` and that names no other ``val_split``);
    - the ``finetune`` protocol with a ``train_split`` other than ``train``: fine-tuning runs
      (:func:`medfm.training.runs.run_finetune`) train on MedMNIST's train split (the suite used to
      fine-tune on it whatever ``train_split`` said, and reported it as the split asked for).

    Raises:
        ConfigError: naming the dataset, before anything is loaded or written.
    """
    for i, spec in enumerate(suite.datasets):
        if suite.protocol.name == "linear" and suite.protocol.linear_c == "val" and spec.val_split is None:
            raise ConfigError(f"datasets[{i}] ({spec.name}) scores the val split, so the probe's C cannot be chosen on "
                              "it (protocol.linear_c / --probe-c val): give it another val_split or a numeric C")
        if suite.protocol.name == "finetune" and spec.train_split != "train":
            raise ConfigError(f"datasets[{i}] ({spec.name}) has train_split {spec.train_split!r}, but the finetune "
                              "protocol fine-tunes on the train split only: remove train_split, or use --protocol "
                              "linear/knn to fit on another split")


#: ``kind`` of a suite's ``results.json``
SUITE_KIND = "evaluation-suite"


def earlier_suite_report(out: Path) -> bool:
    """Whether ``out`` holds an earlier suite evaluation, which :func:`run_suite` replaces as a whole.

    ``out`` may be missing or empty (False), hold a suite's ``results.json`` (True), or hold only
    the fine-tuning runs an interrupted ``finetune`` suite left (False; they are reused). The rule
    is :func:`medfm.evaluation.evaluate.earlier_report`'s, shared with ``medfm eval --data``.

    Raises:
        FileExistsError: ``out`` is a file, or a folder holding anything else (another command's
            output, a ``--data`` evaluation, the user's files), which a suite will not mix with nor delete.
    """
    from medfm.evaluation.evaluate import earlier_report

    return earlier_report(out, lambda res: res.get("kind") == SUITE_KIND, "evaluation-suite report", "a suite",
                          keep=_in_finetune_run)


def _in_finetune_run(rel: Path) -> bool:
    """``<dataset>/finetune-f<fraction>/train/...``: inside a fine-tuning run of the finetune protocol."""
    return len(rel.parts) > 3 and rel.parts[1].startswith("finetune-f") and rel.parts[2] == "train"


def run_suite(suite: Suite, checkpoints: Sequence[str], output: Union[str, Path], data_root: Optional[str] = None,
              cache_dir: Optional[str] = None, progress: bool = True) -> Dict[str, Any]:
    """Run every dataset of ``suite`` and write ``results.json`` + ``report.md`` into ``output``.

    Args:
        suite: from :func:`load_suite` (protocol/label fractions may be overridden first).
        checkpoints: checkpoint dirs or ``hf-hub:`` ids, tried in order per dataset.
        output: output directory; per-dataset reports go to ``<output>/<dataset>/``. The evaluation
            is written to a hidden sibling folder and renamed to ``output`` when complete
            (:func:`medfm.io.atomic_dir`): an earlier suite evaluation there is replaced as a whole
            (its per-dataset folders and figures used to stay next to the new report), except the
            fine-tuning runs this one trained or reused. A failed run leaves ``output`` as it was,
            plus the fine-tuning runs it started (a rerun resumes them).
        data_root: see :func:`medfm.data.root.resolve_data_root`.
        cache_dir: corrupted-set cache root (default ``~/.cache/medfm``).
        progress: tqdm bars (stderr) for corruption generation and for the model's passes over the
            clean and corrupted images (:class:`ProgressSet`).

    Returns:
        The results dict as written; ``unused_checkpoints`` lists command-line checkpoints that no
        dataset used (no class match for ``as-is``; linear/knn/finetune take the first that fits).

    Raises:
        ChannelMismatchError: an ``as-is`` checkpoint matches a dataset's classes but not its
            channels. CheckpointError: unreadable checkpoint.
        ConfigError: ``linear_c: val`` for a dataset scoring its val split with no other
            ``val_split``, or ``finetune`` with a ``train_split`` other than train (:func:`_check_protocol_splits`).
        FileExistsError: ``output`` is a file, or a non-empty folder that holds no earlier suite
            evaluation (:func:`earlier_suite_report`); checked before anything is loaded or written.
        DataFileMissingError: no dataset of the suite is on disk under the data root (one line
            naming the root and how to get the data; nothing is written and an ``output`` folder
            this call created is removed). A suite with some datasets on disk runs, listing the
            others as skipped.
        ValueError: every dataset was skipped, some for another reason than missing data (no
            checkpoint matching its classes, 3D data for a 2D classifier): one line with each
            dataset's reason; nothing is written. (A run that evaluated nothing used to exit 0.)
    """
    from datetime import datetime, timezone

    from medfm.evaluation.report import versions
    from medfm.evaluation.suite_report import render_suite_markdown
    from medfm.io import atomic_dir, atomic_write_json, atomic_write_text

    _check_protocol_splits(suite)
    out = Path(output)
    earlier_suite_report(out)
    created = not out.exists()
    t0, c0 = time.perf_counter(), _cpu_seconds()
    load_avg = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    models = CheckpointCache()
    try:
        with atomic_dir(out) as stage:  # reports go to stage; fine-tuning runs train in place under out
            entries = [_evaluate_dataset(spec, suite, checkpoints, models, stage, data_root, cache_dir, progress,
                                         work=out) for spec in suite.datasets]
            if entries and all(e.get("missing_data") for e in entries):
                raise _no_data_error(suite, data_root)
            if entries and not any(e["status"] == "ok" for e in entries):
                raise ValueError(f"suite {suite.name!r} evaluated no data set: " + "; ".join(
                    f"{e['name']}: {e['reason']}" for e in entries))
            res = {"schema_version": SUITE_SCHEMA_VERSION, "kind": SUITE_KIND,
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(),
                   "suite": to_dict(suite), "checkpoints": list(checkpoints),
                   "host": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_avg_start": load_avg},
                   "datasets": entries, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu_seconds() - c0}
            used = {e["checkpoint"] for e in entries if e["status"] == "ok"}
            unused = [c for c in dict.fromkeys(checkpoints) if c not in used]
            if unused:  # e.g. a second checkpoint with linear/knn: every set took the first; it used to go unmentioned
                res["unused_checkpoints"] = unused
            atomic_write_text(stage / "report.md", render_suite_markdown(res))
            atomic_write_json(stage / "results.json", res)
            for e in entries:  # the fine-tuning runs this evaluation used move in; the rest of out is replaced
                for r in e.get("runs", []):
                    if r.get("finetune_checkpoint"):
                        rel = Path(r["finetune_checkpoint"]).relative_to(out)
                        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                        os.replace(out / rel, stage / rel)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):  # leave no empty output folder (fine-tuning runs stay)
            out.rmdir()
        raise
    return res


__all__ = ["SUITE_SCHEMA_VERSION", "SUITE_KIND", "SUBSET_SEED", "scored_subset_indices", "earlier_suite_report",
           "DatasetSpec", "CorruptionSpec", "ProtocolSpec", "MetricsSpec", "CamSpec", "Suite",
           "load_suite", "suite_overrides", "ArraySet", "ProgressSet", "run_suite", "PROTOCOLS"]
