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


NOT_RECORDED = "not recorded"


def _number(value: Any) -> bool:
    """A real metric value (``bool`` and non-numbers are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _section(mapping: Any, key: str) -> Dict[str, Any]:
    """``mapping[key]`` when it is a dict, else ``{}`` (results files may lack or garble sections)."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def _shown(value: Any) -> Any:
    """A config value for the card, or "not recorded" (never ``None``)."""
    return NOT_RECORDED if value is None or value == "" else value


def _eval_results(cfg: Dict[str, Any], results: Optional[Dict[str, Any]]) -> List[EvalResult]:
    """model-index entries; only for results that name the data set they were measured on."""
    if not results:
        return []
    meta, metrics = _section(results, "meta"), _section(results, "metrics")
    flag = meta.get("dataset")
    if not flag:  # never guess where the numbers come from
        return []
    split = meta.get("split")
    out = []
    for key, mtype in _METRIC_TYPES.items():
        val = metrics.get(key)
        if _number(val):
            out.append(EvalResult(task_type="image-classification", dataset_type=f"medmnist/{flag}",
                                  dataset_name=str(flag), dataset_split=str(split) if split else None,
                                  metric_type=mtype, metric_name=key.upper() if key != "balanced_acc" else "balanced ACC",
                                  metric_value=round(float(val), 4)))
    return out


def _evaluation_text(results: Optional[Dict[str, Any]]) -> str:
    if not results:
        return "Not evaluated yet: run `medfm eval` and then `medfm card <checkpoint> --results results.json`."
    meta, metrics, cis = _section(results, "meta"), _section(results, "metrics"), _section(results, "ci")
    split = f"**{meta['split']}** split" if meta.get("split") else "split (not recorded)"
    dataset = f"`{meta['dataset']}`" if meta.get("dataset") else "a data set not recorded in the results"
    n = results.get("n_samples")
    lines = [f"Measured on the {split} of {dataset}" + (f" ({n} images)" if _number(n) else "") + " with `medfm eval`.",
             "", "| metric | value | 95% CI (bootstrap) |", "|---|---|---|"]
    labels = {"acc": "ACC", "auc": "AUC", "balanced_acc": "balanced ACC", "ece": "ECE (15 bins)"}
    for key, label in labels.items():
        if _number(metrics.get(key)):
            ci = cis.get(key)
            ci_txt = f"[{ci['low']:.3f}, {ci['high']:.3f}]" if isinstance(ci, dict) and _number(ci.get("low")) \
                and _number(ci.get("high")) else ""
            lines.append(f"| {label} | {metrics[key]:.4f} | {ci_txt} |")
    if len(lines) == 4:
        return "The results file holds no ACC/AUC/balanced ACC/ECE values."
    rob = _section(results, "robustness")
    for key, label in (("clean_error", "MedMNIST-C clean error"), ("be", "MedMNIST-C BE"), ("rbe", "MedMNIST-C rBE")):
        if _number(rob.get(key)):
            lines.append(f"| {label} | {rob[key]:.4f} | |")
    refs = {k: {m: v for m, v in ref.items() if _number(v)} for k, ref in _section(meta, "references").items()
            if isinstance(ref, dict)}
    refs = {k: v for k, v in refs.items() if v}
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

    Fields the config or results do not hold are shown as "not recorded"; nothing (sizes,
    splits, data sets of results) is filled in by assumption.
    """
    training = cfg.get("training", {})
    data = training.get("data", {})
    enc = cfg.get("encoder", {})
    pre = cfg.get("preprocessing", {})
    args = cfg.get("args", {})
    license_ = data.get("license_id") or "other"
    model_name = cfg.get("model_name") or "-".join(["medfm"] + [str(v) for v in (enc.get("name"), cfg.get("name")) if v])
    card_data = ModelCardData(
        library_name="medfm",
        license=license_,
        tags=["medical-imaging", "medfm"] + [str(v) for v in (enc.get("name"), cfg.get("name")) if v],
        datasets=[f"medmnist/{data['flag']}"] if data.get("flag") else None,
        model_name=model_name,
        eval_results=_eval_results(cfg, results) or None,
        pipeline_tag="image-classification" if cfg.get("name") == "classification" else None,
    )
    if data:  # only what the checkpoint recorded: no assumed size, splits or checksums
        size = f", {data['size']} px" if data.get("size") else ""
        about = f" — {data['description']}" if data.get("description") else ""
        md5 = f"`{data['md5']}`" if data.get("md5") else NOT_RECORDED
        training_data = (f"`{_shown(data.get('flag'))}` (MedMNIST v2{size}){about}\n\n"
                         f"License of the data: {data.get('license') or 'see the data source'}. "
                         f"Splits used: {_shown(data.get('splits'))}. File md5: {md5}.")
    else:
        training_data = "Not recorded in this checkpoint's config."
    proc = []
    for stage in ("pretraining", "finetuning"):
        if training.get(stage):
            proc.append(f"- **{stage}**: `{json.dumps(training[stage], sort_keys=True)}`")
    if cfg.get("name") == "classification" and args.get("num_classes"):
        outputs = f"{args['num_classes']} {args.get('task') or ''} scores over {_shown(args.get('label_names'))}"
    else:
        outputs = f"{cfg['kind']} outputs" if cfg.get("kind") else NOT_RECORDED
    if pre.get("in_chans") and pre.get("img_size"):
        norm = f", normalised with mean {pre['mean']} / std {pre['std']}" if pre.get("mean") and pre.get("std") else ""
        model_input = f"{pre['in_chans']}-channel {pre['img_size']}x{pre['img_size']} images, intensities in [0, 1]{norm}"
    else:
        model_input = NOT_RECORDED
    limitations = training.get("limitations") or (
        "Trained and evaluated on one public benchmark at low resolution; performance on other scanners, "
        "sites, populations or resolutions is unknown. Scores are not calibrated probabilities of disease."
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=card_data.model_name,
        summary=cfg.get("summary", "A medfm model."),
        encoder_name=_shown(enc.get("name")),
        family=_shown(cfg.get("family")),
        n_params=f"{cfg['n_params']} parameters" if cfg.get("n_params") else "parameter count not recorded",
        adapter=f"{cfg['kind']}/{cfg['name']}" if cfg.get("kind") and cfg.get("name") else NOT_RECORDED,
        adapter_note=" (LoRA adapter)" if cfg.get("adapter") == "lora" else (" (LoRA merged)" if cfg.get("merged_from") else ""),
        model_input=model_input,
        outputs=outputs,
        medfm_version=_shown(cfg.get("medfm_version")),
        training_data=training_data,
        training_procedure="\n".join(proc) or "Not recorded.",
        evaluation=_evaluation_text(results),
        limitations=limitations,
        model_id=model_id,
    )
    return str(card)


def _suite_run_hint(path: Path, suite: Dict[str, Any]) -> str:
    """The first existing per-data-set results file a suite summary lists: ``<suite output>/
    <dataset>/results.json`` (protocol ``as-is``) or ``<dataset>/<run>/results.json`` (probes)."""
    for d in suite.get("datasets") or []:
        if not isinstance(d, dict) or d.get("status") != "ok":
            continue
        folder = path.parent / str(d.get("name"))
        runs = [str(r["run"]) for r in d.get("runs") or [] if isinstance(r, dict) and r.get("run")]
        for candidate in [folder / "results.json"] + [folder / r / "results.json" for r in runs]:
            if candidate.is_file():
                return repr(str(candidate))
    return f"one of {str(path.parent / '<dataset>' / 'results.json')!r} or {str(path.parent / '<dataset>' / '<run>' / 'results.json')!r}"


def update_card(checkpoint: Union[str, Path], results_path: Union[str, Path]) -> Path:
    """Rewrite ``<checkpoint>/README.md`` with the results of ``results.json`` (atomic write).

    Raises:
        CheckpointError: not a checkpoint; ValueError: unreadable results file, one that is
            not a JSON object, or an evaluation suite's summary (its per-data-set
            ``<output>/<dataset>/results.json`` files are what a card takes).
    """
    from medfm.hub import CARD_NAME, load_config
    from medfm.io import atomic_write_text

    ckpt = Path(checkpoint)
    cfg = load_config(ckpt)
    try:
        results = json.loads(Path(results_path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read results file {results_path}: {err}") from None
    if not isinstance(results, dict):
        raise ValueError(f"results file {results_path} must hold a JSON object (the results.json of `medfm eval`), "
                         f"got a JSON {type(results).__name__}")
    if results.get("kind") == "evaluation-suite":
        raise ValueError(f"{results_path} is an evaluation suite's summary; a card takes the results of one data "
                         f"set and protocol run: pass {_suite_run_hint(Path(results_path), results)}")
    atomic_write_text(ckpt / CARD_NAME, build_card(cfg, results, model_id=str(ckpt)))
    return ckpt / CARD_NAME
