"""Model cards written with ``huggingface_hub.ModelCard`` (never by string concatenation of YAML).

The card's YAML front matter (``ModelCardData``) carries the license, datasets, tags and the
``model-index`` with evaluation results, so the hub shows them; the body says what the
model is, what it was trained on, how it was evaluated, intended use and limitations.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"

# MedMNIST metric names -> hub metric types
_METRIC_TYPES = {"acc": "accuracy", "auc": "roc_auc", "balanced_acc": "balanced_accuracy"}


#: display names of metric keys in the card's reference rows
_METRIC_NAMES = {"clean_error": "clean error", "be": "BE", "rbe": "rBE", "acc": "ACC", "auc": "AUC"}


def _eval_results(cfg: Dict[str, Any], results: Optional[Dict[str, Any]]) -> List[EvalResult]:
    if not results:
        return []
    meta = results.get("meta", {})
    metrics = results.get("metrics", {})
    flag = meta.get("dataset") or cfg.get("training", {}).get("data", {}).get("flag", "unknown")
    out = []
    for key, mtype in _METRIC_TYPES.items():
        val = metrics.get(key)
        if isinstance(val, (int, float)):
            out.append(EvalResult(task_type="image-classification", dataset_type=f"medmnist/{flag}",
                                  dataset_name=str(flag), dataset_split=str(meta.get("split", "test")),
                                  metric_type=mtype, metric_name=key.upper() if key != "balanced_acc" else "balanced ACC",
                                  metric_value=round(float(val), 4)))
    return out


def _evaluation_text(results: Optional[Dict[str, Any]]) -> str:
    if not results:
        return "Not evaluated yet: run `medfm eval` and then `medfm card <checkpoint> --results results.json`."
    meta, metrics, cis = results.get("meta", {}), results.get("metrics", {}), results.get("ci", {})
    lines = [f"Measured on the **{meta.get('split', 'test')}** split of `{meta.get('dataset', '?')}` "
             f"({results.get('n_samples', '?')} images) with `medfm eval`.", "",
             "| metric | value | 95% CI (bootstrap) |", "|---|---|---|"]
    labels = {"acc": "ACC", "auc": "AUC", "balanced_acc": "balanced ACC", "ece": "ECE (15 bins)"}
    for key, label in labels.items():
        if isinstance(metrics.get(key), (int, float)):
            ci = cis.get(key)
            ci_txt = f"[{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
            lines.append(f"| {label} | {metrics[key]:.4f} | {ci_txt} |")
    rob = results.get("robustness") or {}
    for key, label in (("clean_error", "MedMNIST-C clean error"), ("be", "MedMNIST-C BE"), ("rbe", "MedMNIST-C rBE")):
        if isinstance(rob.get(key), (int, float)):
            lines.append(f"| {label} | {rob[key]:.4f} | |")
    refs = {k: v for k, v in (meta.get("references") or {}).items() if v}
    if refs:
        lines += ["", "Published figures for comparison:", "", "| model | figures |", "|---|---|"]
    for name, ref in refs.items():
        lines.append(f"| {name} | " + ", ".join(f"{_METRIC_NAMES.get(k, k.upper())} {v:.3f}" for k, v in ref.items()) + " |")
    if rob.get("method"):
        lines += ["", f"Corruptions: {rob['method']}"]
    return "\n".join(lines)


def build_card(cfg: Dict[str, Any], results: Optional[Dict[str, Any]] = None, model_id: str = "path/to/checkpoint") -> str:
    """Markdown text of the model card for a checkpoint ``config.json`` dict.

    Args:
        cfg: the checkpoint config (see :mod:`medfm.hub`).
        results: a ``results.json`` dict from ``medfm eval`` (adds model-index and tables).
        model_id: how the usage snippet refers to the checkpoint.
    """
    training = cfg.get("training", {})
    data = training.get("data", {})
    enc = cfg.get("encoder", {})
    pre = cfg.get("preprocessing", {})
    args = cfg.get("args", {})
    license_ = data.get("license_id") or "other"
    card_data = ModelCardData(
        library_name="medfm",
        license=license_,
        tags=["medical-imaging", "medfm", str(enc.get("name", "")), str(cfg.get("name", ""))],
        datasets=[f"medmnist/{data['flag']}"] if data.get("flag") else None,
        model_name=cfg.get("model_name", f"medfm-{enc.get('name')}-{cfg.get('name')}"),
        eval_results=_eval_results(cfg, results) or None,
        pipeline_tag="image-classification" if cfg.get("name") == "classification" else None,
    )
    if data:
        training_data = (f"`{data.get('flag')}` (MedMNIST v2, {data.get('size', 28)} px) — {data.get('description', '')}\n\n"
                         f"License of the data: {data.get('license', 'see source')}. Splits used: {data.get('splits', 'official train/val/test')}. "
                         f"File md5: `{data.get('md5', '?')}`.")
    else:
        training_data = "Not recorded in this checkpoint's config."
    proc = []
    for stage in ("pretraining", "finetuning"):
        if training.get(stage):
            proc.append(f"- **{stage}**: `{json.dumps(training[stage], sort_keys=True)}`")
    if cfg.get("name") == "classification":
        outputs = f"{args.get('num_classes')} {args.get('task')} scores over {args.get('label_names')}"
    else:
        outputs = f"{cfg.get('kind')} outputs"
    limitations = training.get("limitations") or (
        "Trained and evaluated on one public benchmark at low resolution; performance on other scanners, "
        "sites, populations or resolutions is unknown. Scores are not calibrated probabilities of disease."
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=card_data.model_name,
        summary=cfg.get("summary", "A medfm model."),
        encoder_name=enc.get("name"),
        family=cfg.get("family", "?"),
        n_params=cfg.get("n_params", "?"),
        kind=cfg.get("kind"),
        name=cfg.get("name"),
        adapter_note=" (LoRA adapter)" if cfg.get("adapter") == "lora" else (" (LoRA merged)" if cfg.get("merged_from") else ""),
        in_chans=pre.get("in_chans"),
        img_size=pre.get("img_size"),
        mean=pre.get("mean"),
        std=pre.get("std"),
        outputs=outputs,
        medfm_version=cfg.get("medfm_version"),
        training_data=training_data,
        training_procedure="\n".join(proc) or "Not recorded.",
        evaluation=_evaluation_text(results),
        limitations=limitations,
        model_id=model_id,
    )
    return str(card)


def update_card(checkpoint: Union[str, Path], results_path: Union[str, Path]) -> Path:
    """Rewrite ``<checkpoint>/README.md`` with the results of ``results.json`` (atomic write).

    Raises:
        CheckpointError: not a checkpoint; ValueError: unreadable results file.
    """
    from medfm.hub import CARD_NAME, load_config
    from medfm.io import atomic_write_text

    ckpt = Path(checkpoint)
    cfg = load_config(ckpt)
    try:
        results = json.loads(Path(results_path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read results file {results_path}: {err}") from None
    atomic_write_text(ckpt / CARD_NAME, build_card(cfg, results, model_id=str(ckpt)))
    return ckpt / CARD_NAME
