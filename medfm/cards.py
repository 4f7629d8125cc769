"""Model cards written with ``huggingface_hub.ModelCard`` (never by string concatenation of YAML).

The card's YAML front matter (``ModelCardData``) carries the license, datasets, tags, the
``pipeline_tag`` and the ``model-index`` with evaluation results, so the hub shows them; the
body says what the model is, what it takes and returns, what it was trained on, how it was
evaluated, intended use, limitations and a usage snippet that works for its kind.

One card builder serves every kind of checkpoint medfm writes (:func:`card_kind`):
image classifiers, self-supervised objectives (encoder checkpoints), segmenters (2D, 2.5D,
3D, text-conditioned MulModSeg), VQA models and missing-modality fusers (classification
fusers and the fused segmentation U-Net). What the config or results do not hold is shown
as "not recorded"; nothing is filled in by assumption.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Union

from huggingface_hub import ModelCard, ModelCardData

from medfm.card_kinds import (DATASETS, NOT_RECORDED, PIPELINE_TAGS, card_kind, data_provenance,  # noqa: F401
                              data_set_records, describe_kind, dict_section, hub_dataset_id, other_license,
                              shown_value, training_data_text, training_procedure_text)
from medfm.card_metrics import (check_results_fit, evaluation_text, model_index_results,  # noqa: F401
                                results_kind)  # results_kind: public, re-exported

TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"


def build_card(cfg: Dict[str, Any], results: Optional[Dict[str, Any]] = None,
               model_id: str = "path/to/checkpoint") -> str:
    """Markdown text of the model card for a checkpoint ``config.json`` dict.

    Args:
        cfg: the checkpoint config (see :mod:`medfm.hub`).
        results: a ``results.json`` dict: of ``medfm eval`` (classifiers), or of the segmentation,
            VQA or fusion run that trained the checkpoint (adds model-index and tables).
        model_id: how the usage snippet refers to the checkpoint.

    Fields the config or results do not hold are shown as "not recorded"; nothing (sizes,
    splits, data sets of results) is filled in by assumption.
    """
    kind = card_kind(cfg)
    training = dict_section(cfg, "training")
    records = data_set_records(cfg)
    enc = dict_section(cfg, "encoder")
    license_ids = {d.get("license_id") for d in records if d.get("license_id")}
    license_ = license_ids.pop() if len(license_ids) == 1 else "other"
    datasets = [d for d in (hub_dataset_id(r) for r in records) if d] or None
    model_name = cfg.get("model_name") or "-".join(["medfm"]
                                                   + [str(v) for v in (enc.get("name"), cfg.get("name")) if v])
    card_data = ModelCardData(
        library_name="medfm",
        license=license_,
        tags=["medical-imaging", "medfm"] + [str(v) for v in (enc.get("name"), cfg.get("name")) if v],
        datasets=datasets,
        model_name=model_name,
        eval_results=model_index_results(cfg, results) or None,
        pipeline_tag=PIPELINE_TAGS.get(kind),
        **(other_license(records) if license_ == "other" else {}),
    )
    about = describe_kind(cfg, model_id)
    limitations = training.get("limitations") or about["limitations"]
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=card_data.model_name,
        summary=cfg.get("summary") or about["summary"],
        encoder_name=shown_value(enc.get("name") or dict_section(dict_section(cfg, "args"),
                                                                 "image_encoder").get("name")),
        family=shown_value(cfg.get("family")),
        n_params=f"{cfg['n_params']} parameters" if cfg.get("n_params") else "parameter count not recorded",
        adapter=f"{cfg['kind']}/{cfg['name']}" if cfg.get("kind") and cfg.get("name") else NOT_RECORDED,
        adapter_note=" (LoRA adapter)" if cfg.get("adapter") == "lora"
                                   else (" (LoRA merged)" if cfg.get("merged_from") else ""),
        model_input=about["model_input"],
        outputs=about["outputs"],
        versions=versions_shown(cfg),
        training_data=training_data_text(cfg),
        training_procedure=training_procedure_text(cfg),
        evaluation=evaluation_text(results, cfg),
        intended_use=about["intended_use"],
        limitations=limitations,
        how_to=about["how_to"],
        model_id=model_id,
    )
    return str(card)


def versions_shown(cfg: Dict[str, Any]) -> str:
    """The card's "versions" cell: what wrote the checkpoint (its ``config.json``'s ``versions``,
    :func:`medfm.versions.versions_text`: ``"medfm 0.1.0, torch 2.14.1, scikit-learn 1.9.1, ..."``); an older
    checkpoint with ``medfm_version`` alone shows ``"medfm 0.1.0"``, one with neither "not recorded"."""
    from medfm.versions import versions_text

    found = cfg.get("versions")
    text = versions_text(found) if isinstance(found, dict) else ""
    if not text and cfg.get("medfm_version"):
        text = f"medfm {cfg['medfm_version']}"
    return text or NOT_RECORDED


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
    return (f"one of {str(path.parent / '<dataset>' / 'results.json')!r} or "
            f"{str(path.parent / '<dataset>' / '<run>' / 'results.json')!r}")


def write_card(checkpoint: Union[str, Path], results: Optional[Dict[str, Any]] = None) -> Path:
    """Rewrite ``<checkpoint>/README.md`` from its ``config.json`` and ``results`` (atomic write).

    The runners call this after their own test evaluation, so a trained checkpoint's card holds
    its test metrics.

    Raises:
        CheckpointError: not a checkpoint; ValueError: results of another kind of run
            (:func:`check_results_fit`).
    """
    from medfm.hub import CARD_NAME, load_config
    from medfm.io import atomic_write_text

    ckpt = Path(checkpoint)
    cfg = load_config(ckpt)
    if results:
        check_results_fit(cfg, results)
    atomic_write_text(ckpt / CARD_NAME, build_card(cfg, results, model_id=str(ckpt)))
    return ckpt / CARD_NAME


def update_card(checkpoint: Union[str, Path], results_path: Union[str, Path]) -> Path:
    """Rewrite ``<checkpoint>/README.md`` with the results of ``results.json`` (atomic write).

    ``results.json`` may come from ``medfm eval`` (classifiers) or from the ``medfm segment``,
    ``medfm vqa`` or ``medfm fuse`` run that trained the checkpoint.

    Raises:
        CheckpointError: not a local checkpoint folder (a ``hf-hub:`` id is named as one: the card
            is rewritten in place; :func:`medfm.checkpoint_ids.hub_id_message`); ValueError: unreadable
            results file, one that is not a JSON object or holds ``NaN``/``Infinity`` (not JSON, never
            written by medfm: its numbers used to reach the card as ``nan``/``inf`` measurements), an
            evaluation suite's summary (its per-data-set ``<output>/<dataset>/results.json`` files are
            what a card takes), the results of another kind of run than the checkpoint's (e.g. VQA
            results for a segmenter), or results that record the weights' SHA-256 of another checkpoint.
    """
    from medfm.hub import load_config

    ckpt = Path(checkpoint)
    load_config(ckpt)  # a bad checkpoint is reported before the results file

    def not_json(constant: str) -> Any:  # NaN/Infinity: Python's json reads them, no JSON writer does
        raise ValueError(f"results file {results_path} holds {constant}, which is not JSON: medfm writes strict JSON, "
                         "an undefined metric (e.g. the AUC of a one-class split) as null; the file was written or "
                         "edited elsewhere: pass the results.json `medfm eval` wrote")

    try:
        results = json.loads(Path(results_path).read_text(), parse_constant=not_json)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read results file {results_path}: {err}") from None
    if not isinstance(results, dict):
        raise ValueError(f"results file {results_path} must hold a JSON object (the results.json of `medfm eval`), "
                         f"got a JSON {type(results).__name__}")
    if results.get("kind") == "evaluation-suite":
        raise ValueError(f"{results_path} is an evaluation suite's summary; a card takes the results of one data "
                         f"set and protocol run: pass {_suite_run_hint(Path(results_path), results)}")
    try:
        check_results_fit(load_config(ckpt), results, where=str(results_path))
    except ValueError as err:
        raise ValueError(str(err)) from None
    _check_same_weights(ckpt, results, results_path)
    return write_card(ckpt, results)


def _check_same_weights(ckpt: Path, results: Dict[str, Any], results_path: Union[str, Path]) -> None:
    """Refuse results whose ``meta.checkpoint_sha256`` (written by ``medfm eval``) names other weights
    than ``ckpt`` holds: another checkpoint's numbers (e.g. a BreastMNIST adapter's results for a
    PneumoniaMNIST classifier of the same kind) used to go into the card with exit 0.

    Results that record no hash (run results of ``segment``/``vqa``/``fuse``) are not checked.

    Raises:
        ValueError: the hashes differ (both named).
    """
    from medfm.evaluation.report import checkpoint_hash

    recorded = dict_section(results, "meta").get("checkpoint_sha256")
    if not isinstance(recorded, str) or not recorded:
        return
    try:
        actual = checkpoint_hash(ckpt)
    except FileNotFoundError:  # no weights file to compare: nothing to go on
        return
    if actual != recorded:
        evaluated = dict_section(results, "meta").get("checkpoint") or "another checkpoint"
        raise ValueError(f"{results_path} were measured on other weights ({evaluated}, sha256 {recorded[:12]}) than "
                         f"{ckpt} holds (sha256 {actual[:12]}); evaluate this checkpoint and pass its results.json")
