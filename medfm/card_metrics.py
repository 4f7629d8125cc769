"""The evaluation part of a model card: which results a checkpoint's card takes, and the
metrics table and hub ``model-index`` rows read from a run's or ``medfm eval``'s ``results.json``.

Used by :mod:`medfm.cards`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from huggingface_hub import EvalResult

from medfm.card_kinds import (NOT_RECORDED, PIPELINE_TAGS, card_kind, data_display_name, dict_section, is_metric_number,
                              metric_text, metric_value_text, shown_value)

# MedMNIST metric names -> hub metric types
_METRIC_TYPES = {"acc": "accuracy", "auc": "roc_auc", "balanced_acc": "balanced_accuracy"}


#: display names of metric keys in the card's reference rows
_METRIC_NAMES = {"clean_error": "clean error", "be": "BE", "rbe": "rBE", "acc": "ACC", "auc": "AUC"}


def results_kind(results: Dict[str, Any]) -> str:
    """Which runner wrote a results dict: "vqa", "text_segmentation", "segmentation", "fusion"
    (fusion classification or segmentation), or "classification" (``medfm eval``)."""
    if results.get("kind") == "vqa":
        return "vqa"
    if isinstance(results.get("tasks"), dict):
        return "text_segmentation"
    if isinstance(results.get("per_case"), dict) and isinstance(results.get("summary"), dict):
        return "segmentation"
    if isinstance(results.get("natural"), list):
        return "fusion"
    return "classification"


#: card kind -> the results kinds that fit it
_RESULTS_FOR = {"classification": {"classification"}, "objective": {"classification"}, "other": {"classification"},
                "segmentation": {"segmentation"}, "text_segmentation": {"text_segmentation"}, "vqa": {"vqa"},
                "fusion_classification": {"fusion"}, "fusion_segmentation": {"fusion"}}


def check_results_fit(cfg: Dict[str, Any], results: Dict[str, Any], where: str = "the results") -> None:
    """Refuse results written by another kind of run than the checkpoint's.

    Raises:
        ValueError: e.g. a segmentation run's results for a VQA checkpoint (names both).
    """
    kind, rkind = card_kind(cfg), results_kind(results)
    if rkind not in _RESULTS_FOR.get(kind, {"classification"}):
        raise ValueError(f"{where} are the results of a {rkind.replace('_', ' ')} run, but the checkpoint is a "
                         f"{kind.replace('_', ' ')} model; pass the results.json of the run that trained or "
                         "evaluated this checkpoint")


def model_index_results(cfg: Dict[str, Any], results: Optional[Dict[str, Any]]) -> List[EvalResult]:
    """model-index entries; only for results that name the data set they were measured on."""
    if not results:
        return []
    kind = card_kind(cfg)
    if kind in ("segmentation", "text_segmentation", "vqa", "fusion_classification", "fusion_segmentation"):
        return [EvalResult(task_type=PIPELINE_TAGS.get(kind) or "image-classification", dataset_type=dtype,
                           dataset_name=dname, dataset_split=split, metric_type=mtype, metric_name=mname,
                           metric_value=round(float(val), 4))
                for dtype, dname, split, mtype, mname, val in _run_metrics(cfg, results)[0]]
    meta, metrics = dict_section(results, "meta"), dict_section(results, "metrics")
    flag = meta.get("dataset")
    if not flag:  # never guess where the numbers come from
        return []
    split = meta.get("split")
    protocol, frac = meta.get("protocol"), meta.get("label_fraction")
    parts = []  # a suite protocol's numbers are not the checkpoint's own predictions: say which
    if protocol in _PROTOCOLS:
        parts = [str(protocol)] + ([f"{frac:.0%} of train labels"] if is_metric_number(frac) else [])
    subset = _subset(meta)
    if subset is not None:  # nor are a scored subset's numbers the full test set's
        parts.append(_subset_size(subset, split, short=True))
    how = f" ({', '.join(parts)})" if parts else ""
    out = []
    for key, mtype in _METRIC_TYPES.items():
        val = metrics.get(key)
        if is_metric_number(val):
            name = key.upper() if key != "balanced_acc" else "balanced ACC"
            out.append(EvalResult(task_type="image-classification", dataset_type=f"medmnist/{flag}",
                                  dataset_name=str(flag), dataset_split=str(split) if split else None,
                                  metric_type=mtype, metric_name=name + how, metric_value=round(float(val), 4)))
    return out


_SEG_METRICS = (("dice", "Dice"), ("hd95", "HD95"), ("surface_dice", "surface Dice"))


def _seg_summary_rows(summary: Dict[str, Any]) -> List[Tuple[str, str, Any, Any]]:
    """``(class, metric label, mean, std)`` rows of a segmentation summary (mean over classes first).

    A mean recorded as undefined (e.g. the HD95 of a run whose predictions are all empty: NaN) is
    kept, for the table to show it as undefined (it was printed ``nan``, and put into the model-index).
    """
    rows = []
    mean = dict_section(summary, "mean")
    for key, label in _SEG_METRICS:
        if metric_text(mean, key) is not None:
            rows.append(("mean over classes", label, mean[key], None))
    for cls, metrics in dict_section(summary, "per_class").items():
        for key, label in _SEG_METRICS:
            m = dict_section(metrics, key)
            if metric_text(m, "mean") is not None:
                rows.append((str(cls), label, m["mean"], m.get("std")))
    return rows


def _seg_row(name: str, label: str, mean: Any, std: Any) -> str:
    """``| class | metric | mean | std |`` of a :func:`_seg_summary_rows` row (std left empty when not a number)."""
    return f"| {name} | {label} | {metric_value_text(mean)} | {f'{std:.4f}' if is_metric_number(std) else ''} |"


def _seg_dataset(task: Dict[str, Any], cfg_data: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    dataset = task.get("dataset") or cfg_data.get("dataset")
    if not dataset:
        return None, None
    return str(dataset), data_display_name({"dataset": dataset, "dataset_name": cfg_data.get("dataset_name")
                                     if cfg_data.get("dataset") == dataset else None})


def _fusion_row(cfg: Dict[str, Any], results: Dict[str, Any]) -> Tuple[Optional[Dict[str, Any]], str]:
    """This checkpoint's row of a fusion run's results (natural missingness on the test patients)."""
    training = dict_section(cfg, "training")
    label = training.get("run_label")
    if not label:
        return None, ("the results hold several models and this checkpoint does not record which one it is "
                      "(its run label is not recorded)")
    for row in results.get("natural") or []:
        if isinstance(row, dict) and row.get("model") == label:
            return row, "natural"
    for row in results.get("mnar") or []:  # MNAR-trained models are scored in the MNAR section
        if isinstance(row, dict) and row.get("model") == label and row.get("test") == "natural":
            return row, "natural"
    return None, f"the results hold no row for model `{label}`"


def _run_metrics(cfg: Dict[str, Any], results: Dict[str, Any]) -> Tuple[List[Tuple], str]:
    """``([(dataset type, dataset name, split, metric type, metric name, value)], evaluation text)``
    for the results of a segmentation, VQA or fusion run."""
    kind = card_kind(cfg)
    entries: List[Tuple] = []
    data = dict_section(dict_section(cfg, "training"), "data")
    if kind == "segmentation":
        task = dict_section(results, "task")
        dtype, dname = _seg_dataset(task, data)
        summary = dict_section(results, "summary")
        rows = _seg_summary_rows(summary)
        if not rows:
            return [], "The results file holds no Dice/HD95 values."
        n = summary.get("n_cases")
        text = ["Measured on the **test** cases of "
                f"{f'**{dname}**' if dname else 'a data set not recorded in the results'}"
                + (f" ({n} cases" + (f"; split: {task['split_rule']}" if task.get("split_rule") else "") + ")"
                   if is_metric_number(n) else "")
                + " by the training run (sliding-window inference at the original resolution). HD95 in mm "
                  "(NIfTI spacing) or pixels.", "", "| class | metric | mean | std |", "|---|---|---|---|"]
        for cls, label, mean, std in rows:
            text.append(_seg_row(cls, label, mean, std))
            if cls == "mean over classes" and dtype and is_metric_number(mean):
                entries.append((dtype, dname, "test", label.lower().replace(" ", "_"), label, mean))
        regions = dict_section(results, "regions")
        definition = dict_section(regions, "definition")
        for cls, label, mean, std in _seg_summary_rows(dict_section(regions, "summary")):
            if cls != "mean over classes":  # regions overlap: their mean is not a summary figure
                labels = definition.get(cls)
                name = f"region {cls}" + (f" (labels {', '.join(map(str, labels))})"
                                          if isinstance(labels, list) else "")
                text.append(_seg_row(name, label, mean, std))
        human = dict_section(dict_section(results, "human_reference"), "summary")
        if dict_section(human, "mean"):
            hd = dict_section(human, "mean")
            text += ["", "Second human observer scored against the first (reference): "
                     + ", ".join(f"{lab} {hd[k]:.4f}" for k, lab in _SEG_METRICS if is_metric_number(hd.get(k))) + "."]
        return entries, "\n".join(text)
    if kind == "text_segmentation":
        tasks = dict_section(results, "tasks")
        cfg_tasks = dict_section(dict_section(cfg, "training"), "tasks")
        text = ["Measured on each task's **test** cases by the training run, prompting the task's target.", "",
                "| task | data set | test cases | Dice | HD95 | surface Dice | referring query Dice |",
                "|---|---|---|---|---|---|---|"]
        for name, res in tasks.items():
            if not isinstance(res, dict):
                continue
            dtype, dname = _seg_dataset(dict_section(res, "task"), dict_section(cfg_tasks, name))
            mean = dict_section(dict_section(res, "summary"), "mean")
            ref = dict_section(res, "referring")
            cells = [metric_text(mean, k) or "" for k, _ in _SEG_METRICS]
            n = dict_section(res, "summary").get("n_cases")
            ref_txt = metric_text(ref, "dice") or ""
            text.append(f"| {name} | {shown_value(dname)} | {n if is_metric_number(n) else NOT_RECORDED} | "
                        + " | ".join(cells)
                        + f" | {ref_txt} |")
            for key, label in _SEG_METRICS:
                if dtype and is_metric_number(mean.get(key)):
                    entries.append((dtype, f"{dname} ({name})", "test", key, label, mean[key]))
        if len(text) == 4:
            return [], "The results file holds no per-task Dice values."
        return entries, "\n".join(text)
    if kind == "vqa":
        meta, metrics = dict_section(results, "meta"), dict_section(results, "metrics")
        dtype = meta.get("dataset")
        dname = data_display_name({"dataset": dtype}) if dtype else None
        split = meta.get("split")
        text = [f"Exact-match answer accuracy on the {f'**{split}**' if split else 'test split (not recorded)'} of "
                f"{f'**{dname}**' if dname else 'a data set not recorded in the results'}"
                + (f" ({results['n_questions']} questions" if is_metric_number(results.get("n_questions")) else " (")
                + (f"; {dict_section(results, 'out_of_vocab')['n']} with an answer outside the training vocabulary, "
                   "counted wrong)" if is_metric_number(dict_section(results, "out_of_vocab").get("n")) else ")")
                + " by the training run.", "", "| questions | accuracy | 95% CI (bootstrap) | n | majority baseline |",
                "|---|---|---|---|---|"]
        base = dict_section(results, "majority_baseline")
        for key in ("overall", "closed", "open"):
            m = dict_section(metrics, key)
            acc = metric_text(m, "acc")
            if acc is None:
                continue
            ci = dict_section(m, "ci")
            ci_txt = (f"[{ci['low']:.3f}, {ci['high']:.3f}]"
                      if is_metric_number(ci.get("low")) and is_metric_number(ci.get("high")) else "")
            b = dict_section(base, key).get("acc")
            b_txt = f"{b:.4f}" if is_metric_number(b) else ""
            text.append(f"| {key} | {acc} | {ci_txt} | {m.get('n', '')} | {b_txt} |")
            if dtype and is_metric_number(m["acc"]):
                entries.append((str(dtype), dname, str(split) if split else None, "accuracy",
                                f"{key} accuracy", m["acc"]))
        if len(text) == 4:
            return [], "The results file holds no VQA accuracy values."
        return entries, "\n".join(text)
    # fusion (classification or segmentation)
    row, why = _fusion_row(cfg, results)
    if row is None:
        return [], f"Not in the card: {why}. See the run's results.json / report.md."
    dname = data_display_name(data)
    dtype = data.get("dataset_id") or ("lgg_flair" if dname and "TCGA-LGG" in dname else data.get("dataset"))
    split = dict_section(results, "split")
    where = (f"the **{len(split['test'])} test patients**" if isinstance(split.get("test"), list)
             else "the test patients")
    head = (f"Measured on {where} of {f'**{dname}**' if dname else 'a data set not recorded'} with their natural "
            f"missingness (each slice with the modalities it really has; {row.get('n', NOT_RECORDED)} slices"
            f"{', ' + str(row['n_patients']) + ' patients' if is_metric_number(row.get('n_patients')) else ''}) by the "
            "training run; confidence intervals bootstrap over patients. Every modality subset is in the run's "
            "report.md.")
    text = [head, "", "| metric | value | 95% CI |", "|---|---|---|"]
    for key, label, ci_key in (("auc", "AUC", "auc_ci95"), ("acc", "ACC", None), ("dice", "Dice", "dice_ci95")):
        value = metric_text(row, key)
        if value is not None:
            ci = row.get(ci_key) if ci_key else None
            ci_txt = (f"[{ci[0]:.3f}, {ci[1]:.3f}]"
                      if isinstance(ci, list) and len(ci) == 2 and all(map(is_metric_number, ci)) else "")
            text.append(f"| {label} | {value} | {ci_txt} |")
            if dtype and is_metric_number(row[key]):
                mtype = {"auc": "roc_auc", "acc": "accuracy", "dice": "dice"}[key]
                entries.append((str(dtype), dname, "test", mtype, label, row[key]))
    if len(text) == 4:
        return [], "The results file holds no AUC/ACC/Dice value for this model."
    return entries, "\n".join(text)


#: how a suite protocol's numbers were obtained (``meta.protocol`` of its results)
_PROTOCOLS = {"linear": "a linear probe (logistic regression) on the frozen encoder's features",
              "knn": "a kNN classifier on the frozen encoder's features",
              "finetune": "the encoder fine-tuned with a new classification head"}


def _protocol_text(meta: Dict[str, Any]) -> str:
    """`` --protocol ...: <how>, fitted on <fraction> of the training labels (<n>)`` for results of a
    suite protocol that fits on labels; ``""`` for a classifier scored as it is. An encoder's card
    used to show a 1 %-label linear probe's ACC as plain ACC."""
    how = _PROTOCOLS.get(str(meta.get("protocol")))
    if how is None:
        return ""
    frac = meta.get("label_fraction")
    n = dict_section(meta, "train_labels").get("n")
    labels = (f", fitted on {frac:.0%} of the training labels" if is_metric_number(frac)
              else "") + (f" ({n})" if is_metric_number(n) else "")
    return f" `--protocol {meta['protocol']}`: {how}{labels}"


def _subset(meta: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The scored subset recorded in a results ``meta`` (``medfm eval --suite ... --max-samples``,
    :mod:`medfm.evaluation.subsets`): ``{max_samples, n, of, seed, rule}``, ``{}`` when recorded
    but garbled, ``None`` for results of the whole split."""
    if not meta.get("subset"):
        return None
    return dict_section(meta, "subset")


def _subset_size(subset: Dict[str, Any], split: Any, short: bool = False) -> str:
    """``"99 of the 624 test images"`` (``short``: ``"99 of 624 test images"``, for model-index
    metric names) of a :func:`_subset` record; ``"a subset of the test images"`` when its sizes are
    not recorded."""
    n, of = subset.get("n"), subset.get("of")
    images = f"{split} images" if split else "images"
    if not (is_metric_number(n) and is_metric_number(of)):
        return f"a subset of the {images}"
    return f"{n} of {'' if short else 'the '}{of} {images}"


def _auc_ranked(results: Dict[str, Any]) -> str:
    """``" (ranks the logits)"``, ``" (ranks the probabilities)"``: what the AUC ranked, by the results'
    ``auc_ranking`` (one of :data:`medfm.evaluation.report.AUC_RANKINGS`: the logits, which float32 saturation
    does not tie, or, without them (kNN), the probabilities); ``""`` when it is not recorded (results of an older
    medfm) or not one of these."""
    from medfm.evaluation.report import AUC_RANKINGS

    ranking = results.get("auc_ranking")
    return f" (ranks the {ranking})" if ranking in AUC_RANKINGS.values() else ""


def evaluation_text(results: Optional[Dict[str, Any]], cfg: Optional[Dict[str, Any]] = None) -> str:
    """The card's evaluation section for ``results`` (a run's or ``medfm eval``'s ``results.json``):
    a metrics table with bootstrap CIs (the AUC's row saying what it ranked, ``auc_ranking``: logits or
    probabilities), MedMNIST-C rows, published figures, the corruption method
    and the run's and the robustness warnings (``warnings``, ``robustness.warnings``); the run's own text for
    segmentation, VQA and fusion checkpoints (:func:`_run_metrics`); a how-to line without results."""
    if not results:
        how = ("run `medfm eval` and then `medfm card <checkpoint> --results results.json`"
               if card_kind(cfg or {}) in ("classification", "objective", "other")
               else "`medfm card <checkpoint> --results <run>/results.json` adds the test results of the run that "
                    "trained it")
        return f"Not evaluated yet: {how}."
    if cfg is not None and card_kind(cfg) not in ("classification", "objective", "other"):
        return _run_metrics(cfg, results)[1]
    meta, metrics, cis = dict_section(results, "meta"), dict_section(results, "metrics"), dict_section(results, "ci")
    split = f"**{meta['split']}** split" if meta.get("split") else "split (not recorded)"
    dataset = f"`{meta['dataset']}`" if meta.get("dataset") else "a data set not recorded in the results"
    n = results.get("n_samples")
    rob = dict_section(results, "robustness")
    subset = _subset(meta)
    if subset is None:
        head = f"Measured on the {split} of {dataset}" + (f" ({n} images)" if is_metric_number(n)
                                                          else "") + " with `medfm eval`"
        caveat = ""
    else:  # a suite's max_samples: not the full test set's numbers, and the card says so
        drawn = ", ".join(f"{k} {subset[k]}" for k in ("max_samples", "seed") if is_metric_number(subset.get(k)))
        images = _subset_size(subset, f"**{meta['split']}**" if meta.get("split") else None)
        head = (f"Measured on {images} of {dataset}, a seeded class-stratified subset"
                + (f" ({drawn})" if drawn else "")
                + ", with `medfm eval`")
        caveat = (" All figures below are estimates on this subset, not full-test-set numbers"
                  + ("; BE/rBE still divide by medmnistc's full-test-set AlexNet errors"
                     if is_metric_number(rob.get("be")) else "")
                  + ".")
    lines = [head + _protocol_text(meta) + "." + caveat, "", "| metric | value | 95% CI (bootstrap) |", "|---|---|---|"]
    bins = dict_section(results, "calibration").get("n_bins")
    labels = {"acc": "ACC", "auc": "AUC" + _auc_ranked(results), "balanced_acc": "balanced ACC",
              "ece": f"ECE ({bins if is_metric_number(bins) else 15} bins)"}
    for key, label in labels.items():
        # an undefined AUC (one class among the scored labels: null in results.json) says so; it used
        # to vanish from the table (or, as NaN, to read "nan"). ECE is null when not computed (multi-label).
        value = metric_text(metrics, key)
        if value is None or (key == "ece" and not is_metric_number(metrics[key])):
            continue
        ci = cis.get(key)
        ci_txt = f"[{ci['low']:.3f}, {ci['high']:.3f}]" if isinstance(ci, dict) and is_metric_number(ci.get("low")) \
            and is_metric_number(ci.get("high")) else ""
        lines.append(f"| {label} | {value} | {ci_txt} |")
    if not any(is_metric_number(metrics.get(key)) for key in labels):
        return "The results file holds no ACC/AUC/balanced ACC/ECE values."
    for key, label in (("clean_error", "MedMNIST-C clean error"), ("be", "MedMNIST-C BE"), ("rbe", "MedMNIST-C rBE")):
        if is_metric_number(rob.get(key)):
            lines.append(f"| {label} | {rob[key]:.4f} | |")
    refs = {k: {m: v for m, v in ref.items() if is_metric_number(v)}
            for k, ref in dict_section(meta, "references").items()
            if isinstance(ref, dict)}
    refs = {k: v for k, v in refs.items() if v}
    if refs:
        lines += ["", "Published figures for comparison:", "", "| model | figures |", "|---|---|"]
    for name, ref in refs.items():
        lines.append(f"| {name} | " + ", ".join(f"{_METRIC_NAMES.get(k, k.upper())} {v:.3f}"
                                                for k, v in ref.items()) + " |")
    if rob.get("method"):
        lines += ["", f"Corruptions: {rob['method']}"]
    for title, source in (("Warnings", results), ("MedMNIST-C warnings", rob)):
        # the run's own (few training labels per class, another input size than trained) and BE/rBE
        # over fewer severities than published: they used to stay in the run's report only
        listed = source.get("warnings")
        warnings = [str(w) for w in listed if w] if isinstance(listed, list) else []
        if warnings:
            lines += ["", f"{title}:", ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines)


