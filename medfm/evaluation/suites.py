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
classifier, channels the encoder cannot take under a probe, an empty split;
:func:`medfm.evaluation.suite_data.prepare_dataset`, which loads each dataset) are reported as
skipped with the reason (those whose data are not on disk also with ``"missing_data": true``);
configuration errors (misspelt key, unknown flag or corruption, a matching checkpoint whose in_chans
differs from the data) stop the run with one clear line. A suite none of whose datasets is on disk
stops too (:func:`run_suite`): a run that evaluated nothing used to exit 0 with an empty summary.

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

from medfm.config import ConfigError, recipe_location, to_dict
from medfm.evaluation.array_sets import ArraySet, ProgressSet, image_bar
from medfm.evaluation.metrics import MULTI_LABEL
from medfm.evaluation.protocols import PROTOCOLS
from medfm.evaluation.subsets import SUBSET_SEED, scored_subset_indices
from medfm.evaluation.suite_checkpoints import CheckpointCache
from medfm.evaluation.suite_data import (DatasetSkipped, check_max_samples, dataset_meta, no_data_error,
                                         prepare_dataset, scored_subset)
from medfm.evaluation.suite_spec import (SUITE_SCHEMA_VERSION, CamSpec, CorruptionSpec, DatasetSpec, MetricsSpec,
                                         ProtocolSpec, Suite, load_suite, suite_overrides)


def _scoring(protocol: str, model: Any, core: Any, encoder: Any, train: Any, spec: "Suite",
             ds: Any, val: Any = None, finetune: Optional[Dict[str, Any]] = None, train_split: str = "train",
             bar: Optional[Any] = None) -> Tuple[Any, List[Tuple[str, Optional[float], Any, Any, Dict[str, Any]]]]:
    """``(embed, heads)``: ``embed(dataset) -> array``; each head
    ``(run, fraction, fn(array) -> (scores, logits), cam_model, extra results)``; the extra results of a
    protocol that fits on labels hold ``train_labels`` (:func:`_train_label_counts`).

    ``scores`` ``(N, K)`` are the probabilities; ``logits`` ``(N, K)`` the values they are the softmax / sigmoid
    of (:func:`medfm.evaluation.predict.predict_outputs`, :meth:`~medfm.evaluation.protocols.LinearProbe.outputs`),
    which the AUC ranks as ``medfm eval --data`` does (saturated float32 probabilities tie), or None for kNN,
    which has none (:mod:`medfm.evaluation.protocols`).

    ``finetune`` (protocol ``finetune``): ``{"checkpoint", "sha", "flag", "size", "workdir", "data_root"}``.
    ``bar(images, what)``: the progress bar (:func:`image_bar`) for the feature passes over the train
    and val splits; None: none.
    """
    from medfm.evaluation import protocols as P
    from medfm.evaluation.predict import predict_outputs

    bs = spec.batch_size
    if protocol == "as-is":
        return (lambda d: predict_outputs(model, d, batch_size=bs)), [("as-is", None, lambda s: s, model, {})]
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
            heads.append((run, frac, lambda d, clf=clf: predict_outputs(clf, d, batch_size=bs), clf,
                          {"finetune_checkpoint": str(Path(finetune["workdir"]) / run / "train"),
                           "train_labels": _train_label_counts(kept, ds.task, ds.label_names, "train", "fine-tuned")}))
        return (lambda d: d), heads
    def features(data: Any, split: str) -> np.ndarray:
        if bar is None:
            return P.extract_features(encoder, data, bs)
        with bar(len(data), f"{split} features") as b:
            return P.extract_features(encoder, ProgressSet(data, b), bs)

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
                c, accs = P.select_probe_c(ftr[keep], ytr[keep], fval, yval, ds.task, ds.num_classes)
                extra = {"probe_c": c, "probe_c_val_acc": {f"{k:g}": round(v, 4) for k, v in accs.items()}}
            probe = P.fit_linear_probe(ftr[keep], ytr[keep], ds.task, ds.num_classes, C=c)
            heads.append((run, frac, probe.outputs, probe.to_classifier(encoder, ds.label_names),
                          {**extra, "train_labels": counts}))
        else:
            fk, yk = ftr[keep], ytr[keep]
            heads.append((run, frac, lambda f, fk=fk, yk=yk: (P.knn_scores(
                fk, yk, f, ds.num_classes, k=pr.knn_k, temperature=pr.knn_temperature, task=ds.task), None),
                encoder, {"train_labels": counts}))
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
        return {**self.stages, "total": {"wall_s": self._last[0] - self._start[0],
                                         "cpu_s": self._last[1] - self._start[1]}}


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
    if task == MULTI_LABEL:
        counts = y.reshape(len(y), -1).sum(axis=0).astype(int)
    else:
        counts = np.bincount(y.reshape(-1).astype(np.int64), minlength=len(names))
    per = {str(n): int(c) for n, c in zip(names, counts)}
    few = {k: v for k, v in per.items() if v < FEW_LABELS}
    warnings = []
    if few:
        kind = "positive(s)" if task == MULTI_LABEL else "label(s)"
        warnings.append(f"{what} on {len(y)} {split} labels: " + ", ".join(f"{k!r} has {v} {kind}"
                                                                           for k, v in few.items())
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
    from medfm.data.corruptions import corrupted_sets, corruption_datasets, describe_method, resample_roundtrip
    from medfm.evaluation.report import write_classification_report
    from medfm.evaluation.robustness import robustness_markdown, robustness_summary
    from medfm.io import atomic_write_json, atomic_write_text

    def bar(images: int, what: str, on: bool = True) -> Any:  # a bar over images the model runs on
        return image_bar(images, f"{spec.name} {what}", on=progress and on)

    clock = _Stopwatch()
    entry: Dict[str, Any] = {"name": spec.name, "flag": spec.flag, "folder": spec.folder, "split": spec.split,
                             "protocol": suite.protocol.name}
    try:
        prep = prepare_dataset(spec, suite, checkpoints, models, data_root)
    except DatasetSkipped as skip:
        return {**entry, "status": "skipped", "reason": str(skip), **({"missing_data": True} if skip.missing else {})}
    ds, subset = scored_subset(prep["ds"], spec.max_samples)
    clock.lap("load")
    entry.update({"status": "ok", "checkpoint": prep["checkpoint"], "checkpoint_sha256": prep["sha"],
                  "size": ds.size, "n_samples": len(ds), "data_md5": ds.md5, **({"subset": subset} if subset else {}),
                  "runs": []})
    finetune = {"checkpoint": prep["checkpoint"], "sha": prep["sha"], "flag": spec.flag, "size": prep["size"],
                "workdir": (work or out) / spec.name, "data_root": data_root}
    fit_stage, forward, score_stage = _STAGES[suite.protocol.name]
    embed, heads = _scoring(suite.protocol.name, prep["model"], prep["core"], prep["encoder"], prep["train"], suite, ds,
                            val=prep["val"], finetune=finetune, train_split=spec.train_split, bar=bar)
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
    scored = []  # per head: clean (scores, logits), {corruption: (S, N, K) scores}, control scores
    for run_name, _, head, _, _ in heads:
        # finetune (no forward stage): the heads run the fine-tuned model on image sets, counted here
        with bar(len(ds) * (1 + len(corrupted) + bool(corrupted)), f"{run_name} inference", on=not forward) as b:
            score = head if forward else (lambda data, head=head, b=b: head(ProgressSet(data, b)))
            by_c: Dict[str, List[np.ndarray]] = {}
            for (c, s), emb in corrupted.items():
                by_c.setdefault(c, []).append(score(emb)[0])
            scored.append((score(clean), {c: np.stack(v) for c, v in by_c.items()},
                           score(control)[0] if corrupted else None))
    if score_stage:
        clock.lap(score_stage)
    meta = {**dataset_meta(spec, ds, bool(corrupted), subset), "checkpoint": prep["checkpoint"],
            "checkpoint_sha256": prep["sha"], "protocol": suite.protocol.name}
    m = suite.metrics
    for (run_name, frac, _, cam_model, extra), (clean_outputs, by_corruption, control_scores) in zip(heads, scored):
        scores, logits = clean_outputs  # logits None: the AUC ranks the probabilities (kNN)
        rdir = out / spec.name if len(heads) == 1 else out / spec.name / run_name
        train_labels = extra.get("train_labels")
        fit_warnings = list(train_labels.pop("warnings", [])) if train_labels else []
        run_meta = {**meta, "label_fraction": frac, **({"train_labels": train_labels} if train_labels else {}),
                    **({"probe_c": extra["probe_c"]} if "probe_c" in extra else {})}
        res = write_classification_report(rdir, ds.labels, scores, ds.task, ds.label_names, run_meta,
                                          threshold=m.threshold, n_boot=m.n_boot, n_bins=m.ece_bins,
                                          extra_warnings=fit_warnings, logits=logits)
        run_entry = {"run": run_name, "label_fraction": frac, "dir": str(rdir.relative_to(out)),
                     "metrics": {k: res["metrics"][k] for k in ("acc", "auc", "balanced_acc", "ece")},
                     "auc_ranking": res["auc_ranking"],
                     "ci": res["ci"], "per_class_recall": res["metrics"]["per_class_recall"], **extra,
                     **({"warnings": fit_warnings} if fit_warnings else {})}
        if corrupted:
            run_entry["robustness"] = robustness_summary(
                ds.labels, scores, by_corruption, control_scores, ds.task, spec.flag,
                list(cs.severities), rdir / "error_vs_severity.png", threshold=m.threshold,
                                                         title=f"{spec.name} ({run_name})")
            res["robustness"] = {**run_entry["robustness"], "method": entry["corruptions"]["method"]}
            res["files"] = res["files"] + ["error_vs_severity.png"]
            atomic_write_text(rdir / "report.md", (rdir / "report.md").read_text() + "\n## MedMNIST-C\n\n"
                              + entry["corruptions"]["method"] + "\n\n" + robustness_markdown(run_entry["robustness"])
                              + "\n![error_vs_severity](error_vs_severity.png)\n")
        if suite.cam.enabled:
            run_entry["cam"] = _cam(cam_model, ds, rdir, suite.cam, has_head=suite.protocol.name != "knn")
            if "path" in run_entry["cam"]:  # listed in results.json and shown in report.md (it was only listed)
                res["files"] = res["files"] + ["cam_grid.png"]
                atomic_write_text(rdir / "report.md",
                                  (rdir / "report.md").read_text() + "\n## Class activation maps\n\n"
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
    where = recipe_location(suite, "")  # "s.yaml" for a suite read from a file, as its other errors
    for i, spec in enumerate(suite.datasets):
        at = f"{where}: datasets[{i}]" if where else f"datasets[{i}]"
        if suite.protocol.name == "linear" and suite.protocol.linear_c == "val" and spec.val_split is None:
            raise ConfigError(f"{at} ({spec.name}) scores the val split, so the probe's C cannot be chosen on "
                              "it (protocol.linear_c / --probe-c val): give it another val_split or a numeric C")
        if suite.protocol.name == "finetune" and spec.train_split != "train":
            raise ConfigError(f"{at} ({spec.name}) has train_split {spec.train_split!r}, but the finetune "
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
        NotADirectoryError: ``out`` or a folder above it is a file (the report folders' one wording:
            :func:`medfm.evaluation.report.check_output_dir`).
        FileExistsError: ``out`` is a folder holding anything else (another command's output, a ``--data``
            evaluation, the user's files), which a suite will not mix with nor delete.
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
            train/val (probe, kNN), clean and corrupted images, each counting images (:func:`image_bar`).

    Returns:
        The results dict as written; ``unused_checkpoints`` lists command-line checkpoints that no
        dataset used (no class match for ``as-is``; linear/knn/finetune take the first that fits).

    Raises:
        ChannelMismatchError: an ``as-is`` checkpoint matches a dataset's classes but not its
            channels. CheckpointError: unreadable checkpoint.
        ConfigError: ``linear_c: val`` for a dataset scoring its val split with no other
            ``val_split``, or ``finetune`` with a ``train_split`` other than train (:func:`_check_protocol_splits`);
            a ``max_samples`` below the classes (label groups) of a dataset's scored split on disk
            (:func:`medfm.evaluation.suite_data.check_max_samples`; one not on disk is skipped). Both before
            anything is loaded or written.
        NotADirectoryError: ``output`` or a folder above it is a file; FileExistsError: ``output`` is a non-empty
            folder that holds no earlier suite evaluation (both :func:`earlier_suite_report`, checked before
            anything is loaded or written).
        DataFileMissingError: no dataset of the suite is on disk under the data root (one line
            naming the root and how to get the data; nothing is written and an ``output`` folder
            this call created is removed). A suite with some datasets on disk runs, listing the
            others as skipped.
        ValueError: every dataset was skipped, some for another reason than missing data (no
            checkpoint matching its classes, 3D data for a 2D classifier): one line with each
            dataset's reason; nothing is written. (A run that evaluated nothing used to exit 0.)
    """
    from medfm.evaluation.suite_report import render_suite_markdown
    from medfm.io import atomic_dir, atomic_write_json, atomic_write_text
    from medfm.training.loop import host_threads
    from medfm.versions import result_header

    _check_protocol_splits(suite)
    check_max_samples(suite, data_root)  # the datasets on disk (those the run scores)
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
                raise no_data_error(suite, data_root)
            if entries and not any(e["status"] == "ok" for e in entries):
                raise ValueError(f"suite {suite.name!r} evaluated no data set: " + "; ".join(
                    f"{e['name']}: {e['reason']}" for e in entries))
            res = {**result_header(SUITE_KIND, SUITE_SCHEMA_VERSION),
                   "suite": to_dict(suite), "checkpoints": list(checkpoints),
                   "host": {**host_threads(), "load_avg_start": load_avg},
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
