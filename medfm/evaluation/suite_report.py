"""``report.md`` of an evaluation suite: summary table, skipped sets, and per data set the clean
metrics, the comparison with published figures for what was run (MedMNIST v2's ResNet-18 (28)
row; with corruptions, MedViT-small's MedMNIST-C figures and medmnistc's AlexNet reference) and
the corruption table. A data set scored on a subset (``max_samples``) says so and is compared with
no published full-test-set figure.

The results dict it renders is the one :func:`medfm.evaluation.suites.run_suite` writes as
``results.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from medfm.evaluation.report import AUC_RANKINGS, provenance_text

#: Published PneumoniaMNIST-C figures of MedViT-small (corruptions applied at 224 px), as quoted in issue 5.
MEDVIT_SMALL_C = {"pneumoniamnist": {"clean_error": 0.040, "be": 0.384, "rbe": 0.246}}


#: what a run's AUC ranked (``auc_ranking`` of its results, named by :data:`medfm.evaluation.report.AUC_RANKINGS`,
#: keyed by whether the run had logits) -> how the report describes it
_AUC_RANKED = {AUC_RANKINGS[True]: "the model's log-odds (float32 saturation does not tie them)",
               AUC_RANKINGS[False]: "the predicted probabilities, a kNN's vote shares (it has no logits; "
                                    "equal shares tie)"}


def _fmt(x: Any, nd: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def render_suite_markdown(res: Dict[str, Any]) -> str:
    """``report.md`` of a suite results dict: summary, skipped datasets, then per dataset the
    clean metrics, the comparison with published figures and the corruption table. Each run's
    ``auc_ranking`` (what its AUC ranked: the logits, or a kNN's probabilities) is shown next to its AUC."""
    from medfm.evaluation.report import markdown_table
    from medfm.evaluation.robustness import alexnet_reference, robustness_markdown

    suite = res["suite"]
    description = [suite["description"].strip() + "\n"] if suite.get("description") else []
    lines = [f"# Evaluation suite `{suite['name']}`\n"] + description + [
             f"- checkpoints: {', '.join(f'`{c}`' for c in res['checkpoints']) or 'per dataset'}",
             f"- protocol: {suite['protocol']['name']}"
             + (f", label fractions {suite['protocol']['label_fractions']}" if suite["protocol"]["name"] != "as-is"
                else ""),
             f"- {provenance_text(res)}",
             f"- wall time: **{res['wall_s']:.1f} s** on {res['host']['cpus']} CPU(s), "
             f"{res['host']['torch_threads']} torch thread(s); CPU time {res['cpu_s']:.1f} s (this process and its "
             f"workers); load average at the start {res['host']['load_avg_start']}"]
    methods = {d["corruptions"]["method"] for d in res["datasets"] if isinstance(d.get("corruptions"), dict)
               and "method" in d["corruptions"]}
    for m in sorted(methods):
        lines.append(f"- corruption method: {m}")
    subsets = [d for d in res["datasets"] if d.get("subset")]
    if subsets:
        lines.append(f"- **subset**: {', '.join(d['name'] for d in subsets)} scored on a fixed class-stratified subset "
                     "of the split (max_samples; n below is 'scored of total'): estimates, not comparable with "
                     "full-test-set figures")
    if res.get("unused_checkpoints"):
        lines.append(f"- not used by any data set: {', '.join(f'`{c}`' for c in res['unused_checkpoints'])} ("
                     + ("no data set has their classes" if suite["protocol"]["name"] == "as-is" else
                        "each data set takes the first checkpoint that fits it; run the suite once per checkpoint "
                        "to compare them") + ")")
    ok = [d for d in res["datasets"] if d["status"] == "ok"]
    rows = []
    for d in ok:
        for r in d["runs"]:
            rob = r.get("robustness") or {}
            rows.append({"dataset": d["name"], "run": r["run"], "n": _n_scored(d), "acc": r["metrics"]["acc"],
                         "acc_ci": _ci(r["ci"].get("acc")), "auc": r["metrics"]["auc"],
                         "auc_ci": _ci(r["ci"].get("auc")),
                         "ranks": r.get("auc_ranking", ""), "bal": r["metrics"]["balanced_acc"],
                         "ece": r["metrics"]["ece"],
                         "err": rob.get("clean_error"), "be": rob.get("be"), "rbe": rob.get("rbe")})
    ranked = [k for k in _AUC_RANKED if any(row["ranks"] == k for row in rows)]
    if ranked:  # what the AUCs ranked: a kNN run's (vote shares) and a probe's (logits) are compared here
        lines.append("- AUC ranks (`auc_ranking`): " + "; ".join(f"`{k}`, {_AUC_RANKED[k]}" for k in ranked))
    lines.append("\n## Summary\n")
    lines.append(markdown_table(rows, {"dataset": "dataset", "run": "protocol", "n": "n", "acc": "ACC",
                                       "acc_ci": "ACC 95% CI", "auc": "AUC", "auc_ci": "AUC 95% CI",
                                       "ranks": "AUC ranks", "bal": "balanced ACC",
                                       "ece": f"ECE ({_ece_bins(suite)} bins)", "err": "clean error",
                                       "be": "BE", "rbe": "rBE"}) if rows else "No dataset was evaluated.\n")
    skipped = [d for d in res["datasets"] if d["status"] == "skipped"]
    if skipped:
        lines.append("\n## Skipped\n")
        lines.append(markdown_table([{"d": d["name"], "r": d["reason"]} for d in skipped],
                                    {"d": "dataset", "r": "reason"}))
    for d in ok:
        lines.append(f"\n## {d['name']}\n")
        lines.append(f"Checkpoint `{d['checkpoint']}` (sha256 `{(d['checkpoint_sha256'] or 'n/a')[:16]}`), split "
                     f"{d['split']}, {d['size']} px, {d['n_samples']} images, data md5 `{d['data_md5']}`. Time: "
                     + ", ".join(f"{k.replace('_', ' ')} {v['wall_s']:.1f} s (CPU {v['cpu_s']:.1f} s)"
                                 for k, v in d["timing"].items()) + ".\n")
        sub = d.get("subset")
        if sub:
            lines.append(f"**Subset:** {sub['n']} of the {sub['of']} {d['split']} images (max_samples "
                         f"{sub['max_samples']}, class-stratified, seed {sub['seed']}; the same images clean and "
                         "corrupted). All numbers below are estimates on this subset; published full-test-set "
                         "figures are not listed (BE/rBE still divide by medmnistc's full-test-set AlexNet errors).\n")
        cor = d.get("corruptions")
        if isinstance(cor, dict) and "skipped" in cor and isinstance(cor["skipped"], str):
            lines.append(f"Corruptions: {cor['skipped']}.\n")
        elif isinstance(cor, dict):
            lines.append(f"Corruptions: {len(cor['run'])} x {len(cor['severities'])} severities = "
                         f"{cor['images_scored']} images scored; cache: {cor['cache']['hits']} set(s) reused, "
                         f"{cor['cache']['generated']} generated. {cor['method']}\n")
            for name, why in cor["skipped"].items():
                lines.append(f"- skipped corruption `{name}`: {why}")
        for r in d["runs"]:
            lines.append(f"\n### {r['run']}\n")
            fitted = _fitted_on(r)
            lines.append((fitted + " " if fitted else "") + "Per-class recall: "
                         + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in r["per_class_recall"].items())
                         + f". Full report: [{r['dir']}/report.md]({r['dir']}/report.md).\n")
            for w in r.get("warnings", []):
                lines.append(f"- warning: {w}")
            rob = r.get("robustness")
            refs = _references(d, r, alexnet_reference)
            if refs:
                lines.append("\n" + markdown_table(refs, {"model": "model", "err": "clean error", "be": "BE",
                                                          "rbe": "rBE", "acc": "ACC", "auc": "AUC", "note": "note"},
                                                   floatfmt=".3f"))
            if rob:
                lines.append("\n" + robustness_markdown(rob))
            figs = ["error_vs_severity.png"] if rob else []
            if "files" in r:  # the figures this run wrote (multi-label sets have no reliability/confusion plots)
                figs += [f for f in ("reliability.png", "confusion_matrix.png", "cam_grid.png") if f in r["files"]]
            else:  # results.json of an older medfm
                figs += (["reliability.png", "confusion_matrix.png"]
                         + (["cam_grid.png"] if "path" in r.get("cam", {}) else []))
            lines.append("\n" + "".join(f"![{Path(f).stem}]({r['dir']}/{f})\n" for f in figs))
            if "error" in r.get("cam", {}):
                lines.append(f"CAM grid failed: {r['cam']['error']}\n")
    return "\n".join(lines) + "\n"


def _n_scored(d: Dict[str, Any]) -> Any:
    """The summary's ``n``: the images scored, ``"200 of 624"`` on a subset."""
    sub = d.get("subset")
    return f"{sub['n']} of {sub['of']}" if sub else d["n_samples"]


def _ci(ci: Optional[Dict[str, Any]]) -> str:
    return "" if not ci or ci.get("low") is None else f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def _ece_bins(suite: Dict[str, Any]) -> Any:
    """The suite's ECE bin count (15 when an older results dict does not record it)."""
    return (suite.get("metrics") or {}).get("ece_bins", 15)


def _fitted_on(run: Dict[str, Any]) -> str:
    """``"Fitted on 5 train label(s) (malignant 1, normal, benign 4); probe C 0.1 (chosen on the val split)."``
    for a run that trained on labels (linear, knn, finetune), else ``""``."""
    train = run.get("train_labels")
    if not train:
        return ""
    per = ", ".join(f"{k} {v}" for k, v in (train.get("per_class") or {}).items())
    text = f"Fitted on {train['n']} {train.get('split', 'train')} label(s)" + (f" ({per})" if per else "")
    if run.get("probe_c") is not None:
        text += f"; probe C {run['probe_c']:g}" + (" (chosen on the val split)" if "probe_c_val_acc" in run else "")
    return text + "."


def _references(d: Dict[str, Any], run: Dict[str, Any], alexnet_reference: Any) -> List[Dict[str, Any]]:
    """Rows comparing ``run`` (one run of data set ``d``) with published figures for the same dataset,
    for what was run: MedMNIST-C rows (MedViT-small, AlexNet) only with corruption results (a
    clean-only run used to list MedViT-small's MedMNIST-C row); none on a subset (``d["subset"]``:
    published figures are full-test-set numbers).

    The "this checkpoint" row shows ``run``'s own ACC/AUC and robustness (it used to show the
    first run's ACC/AUC under every label fraction)."""
    if d.get("subset"):
        return []
    rob = run.get("robustness")
    ranked = f"; AUC ranks the {run['auc_ranking']}" if run.get("auc_ranking") in _AUC_RANKED else ""
    rows = [{"model": "this checkpoint", "err": (rob or {}).get("clean_error"), "be": (rob or {}).get("be"),
             "rbe": (rob or {}).get("rbe"), "acc": run["metrics"]["acc"], "auc": run["metrics"]["auc"],
             "note": f"{d['size']} px{ranked}" + ("; corruptions: see method above" if rob else "")}]
    from medfm.evaluation.evaluate import MEDMNIST_V2_RESNET18_28

    flag = d.get("flag")
    if rob and flag in MEDVIT_SMALL_C:
        v = MEDVIT_SMALL_C[flag]
        rows.append({"model": "MedViT-small (published)", "err": v["clean_error"], "be": v["be"], "rbe": v["rbe"],
                     "note": "corruptions at 224 px"})
    if rob and rob.get("be") is not None:
        rows.append({"model": "AlexNet (medmnistc reference)", "err": alexnet_reference(flag)["clean_score"], "be": 1.0,
                     "rbe": 1.0, "note": "224 px; BE = rBE = 1 by definition"})
    if flag in MEDMNIST_V2_RESNET18_28 and d["size"] == 28:
        v = MEDMNIST_V2_RESNET18_28[flag]
        rows.append({"model": "MedMNIST v2 ResNet-18 (28) (published)", "acc": v["acc"], "auc": v["auc"],
                     "note": "clean test set"})
    return rows if len(rows) > 1 else []


__all__ = ["MEDVIT_SMALL_C", "render_suite_markdown"]
