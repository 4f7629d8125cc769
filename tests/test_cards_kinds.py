"""Model cards for every kind of checkpoint: the task, data set, inputs, outputs, metrics and usage fit the kind.

Cards used to be written for classification only: a 3D hippocampus U-Net was "1-channel 32x32
images" trained on "MedMNIST v2" with an image-classification snippet, VQA-RAD was "MedMNIST v2",
and runs that evaluated their model left "Not evaluated yet".
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard

import medfm
from medfm import cards
from medfm.cards import build_card, update_card
from medfm.hub import model_config, save_pretrained

SEG_RESULTS = {"task": {"dataset": "msd_hippocampus", "split_rule": "sorted case ids; i % 5 == 4 -> test"},
               "summary": {"n_cases": 2, "mean": {"dice": 0.81234, "hd95": 2.5, "surface_dice": 0.7},
                           "per_class": {"anterior": {"dice": {"mean": 0.8, "std": 0.01}}}},
               "per_case": {}}
HIP_DATA = {"dataset": "msd_hippocampus", "dataset_name": "MSD Task04 Hippocampus", "license": "CC BY-SA 4.0",
            "license_id": "cc-by-sa-4.0", "source": "Medical Segmentation Decathlon", "split_rule": "i % 5 == 4 -> test",
            "n_train": 208, "n_test": 52, "md5": {"SHA256SUMS": "ab" * 16}, "unit": "cases"}


def _card(cfg, results=None, model_id="ckpt"):
    text = build_card(cfg, results, model_id=model_id)
    card = ModelCard(text)  # the YAML front matter parses
    return card, card.data.to_dict(), card.text


def _section(text, name):
    return text.split(f"## {name}")[1].split("\n## ")[0]


def _seg_cfg(encoder, spatial_dims_3d=False, context_slices=0, in_chans=1, img_size=16, intensity="percentile"):
    from medfm.adapters.segmentation import SegmentationModel

    torch.manual_seed(0)
    enc = medfm.create_encoder(encoder, in_chans=in_chans, img_size=img_size)
    inference = {"roi_size": [16, 16, 16] if spatial_dims_3d else [16, 16], "intensity": intensity,
                 "context_slices": context_slices, "slice_axis": 0}
    model = SegmentationModel(enc, 3, ["background", "anterior", "posterior"], decoder={"stem_channels": 4},
                              inference=inference)
    return model_config(model, {"training": {"data": HIP_DATA, "mode": "full", "train": {"epochs": 1}}})


def test_3d_segmenter_card_names_volumes_dataset_metrics_and_the_segmentation_pipeline():
    cfg = _seg_cfg("resnet3d_test", spatial_dims_3d=True)
    assert cards.card_kind(cfg) == "segmentation"
    card, data, text = _card(cfg, SEG_RESULTS)
    assert data["pipeline_tag"] == "image-segmentation" and data["license"] == "cc-by-sa-4.0"
    assert "license_name" not in data and "license_link" not in data  # only for licences outside the hub's list
    assert data["datasets"] == ["msd_hippocampus"]
    assert "MedMNIST" not in text and "28x28" not in text and "16x16 images" not in text
    assert "3D volumes `(1, D, H, W)`" in text and "per-voxel class logits" in text
    assert "sliding windows of 16x16x16 (overlap 0.5, as evaluated)" in text  # the pipeline's default overlap
    assert "**MSD Task04 Hippocampus**" in _section(text, "Training data")
    assert "208 training / 52 test cases" in text and "CC BY-SA 4.0" in text
    assert '"epochs": 1' in _section(text, "Training procedure")
    metrics = {(r.metric_name, r.metric_value, r.dataset_name) for r in card.data.eval_results}
    assert ("Dice", 0.8123, "MSD Task04 Hippocampus") in metrics and ("HD95", 2.5, "MSD Task04 Hippocampus") in metrics
    assert "| mean over classes | Dice | 0.8123 |" in _section(text, "Evaluation") and "Not evaluated" not in text
    how = _section(text, "How to use")
    assert 'medfm.pipeline("image-segmentation", model="ckpt")' in how and "image-classification" not in how
    assert "low-resolution" not in text  # the MedMNIST intended-use sentence


def test_2d_and_2_5d_segmenter_inputs():
    _, _, text2d = _card(_seg_cfg("resnet_test"))
    assert "1-channel 2D images" in text2d and "per-pixel class logits `(B, 3, H, W)`" in text2d
    assert "Not evaluated yet" in text2d and "medfm card <checkpoint> --results <run>/results.json" in text2d
    _, _, text25 = _card(_seg_cfg("resnet_test", context_slices=2, in_chans=5))
    assert "2 neighbouring slices on each side as 5 input channels (2.5D)" in text25


@pytest.mark.parametrize("encoder, kw, expected", [
    ("resnet3d_test", {"spatial_dims_3d": True}, "intensities already in [0, 1] (the caller scales them: uint8 / 255)"),
    ("resnet_test", {"context_slices": 2, "in_chans": 5}, "intensities already in [0, 1] (the caller scales them"),
    ("resnet_test", {}, "intensities in [0, 1] (uint8 / 255)"),  # 2D images: the pipeline divides uint8 by 255
])
def test_unit_intensity_cards_say_who_scales_volumes(encoder, kw, expected):
    """A "unit" volume model's card said "(uint8 / 255)" as for images, but the pipeline refuses
    volumes outside [0, 1]: the caller scales them."""
    _, _, text = _card(_seg_cfg(encoder, intensity="unit", **kw))
    assert expected in text


def _text_seg_cfg():
    from medfm.adapters.text_seg import build_text_segmenter
    from tests.helpers.bag_of_words import BagOfWordsEncoder

    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=28)
    targets = [{"name": "vessel", "modality": "fundus", "target": "vessels"},
               {"name": "lesion", "modality": "brain MRI", "target": "abnormality"}]
    model = build_text_segmenter(enc, targets, BagOfWordsEncoder(), head={"embed_dim": 8, "controller_hidden": 8})
    tasks = {"vessel": {"dataset": "chase_db1", "dataset_name": "CHASE_DB1", "n_train": 20, "n_test": 8},
             "lesion": {"dataset": "lgg_flair", "dataset_name": "TCGA-LGG", "n_train": 16, "n_test": 7}}
    return model_config(model, {"training": {"tasks": tasks, "mode": "full"}})


def test_text_conditioned_segmenter_card():
    cfg = _text_seg_cfg()
    res = {"tasks": {"vessel": {**SEG_RESULTS, "task": {"dataset": "chase_db1"}, "referring": {"dice": 0.5}},
                     "lesion": {**SEG_RESULTS, "task": {"dataset": "lgg_flair"}}}}
    card, data, text = _card(cfg, res)
    assert cards.card_kind(cfg) == "text_segmentation" and data["pipeline_tag"] == "image-segmentation"
    assert set(data["datasets"]) == {"chase_db1", "lgg_flair"} and "MedMNIST" not in text
    assert "CHASE_DB1" in text and "TCGA-LGG" in text and "free-text query" in text
    assert "| vessel | CHASE_DB1 | 2 | 0.8123 | 2.5000 | 0.7000 | 0.5000 |" in text
    assert {r.dataset_name for r in card.data.eval_results} == {"CHASE_DB1 (vessel)", "TCGA-LGG (lesion)"}
    assert 'target="vessel"' in _section(text, "How to use")


def _vqa_cfg(tmp_path_factory=None):
    from medfm.adapters.vqa import VQAModel

    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    model = VQAModel(enc, ["yes", "no", "axial"], 8, closed_answers=["yes", "no"], open_answers=["axial"],
                     text_encoder={"name": "minilm"}, dim=8, heads=2, layers=1)
    data = {"dataset": "vqa_rad", "license": "CC0 1.0", "license_id": "cc0-1.0", "n_train": 3064, "n_test": 451,
            "md5": {"trainset.json": "00" * 16}}
    return model_config(model, {"training": {"data": data, "mode": "frozen", "train": {"epochs": 1}}})


VQA_RESULTS = {"kind": "vqa", "n_questions": 451, "out_of_vocab": {"n": 45},
               "meta": {"dataset": "vqa_rad", "split": "MEVF testset.json"},
               "metrics": {"overall": {"acc": 0.31, "n": 451, "ci": {"low": 0.27, "high": 0.35}},
                           "closed": {"acc": 0.51, "n": 272}, "open": {"acc": 0.0, "n": 179}}}


def test_vqa_card_names_vqa_rad_answers_and_the_vqa_pipeline():
    cfg = _vqa_cfg()
    card, data, text = _card(cfg, VQA_RESULTS)
    assert cards.card_kind(cfg) == "vqa" and data["pipeline_tag"] == "visual-question-answering"
    assert data["datasets"] == ["vqa_rad"] and data["license"] == "cc0-1.0"
    assert "MedMNIST" not in text and "**VQA-RAD**" in text
    assert "and an English question" in text and "answer logits over 3 answers" in text
    assert "3064 training / 451 test question-answer pairs" in text
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} == {
        ("overall accuracy", 0.31), ("closed accuracy", 0.51), ("open accuracy", 0.0)}
    assert "| overall | 0.3100 | [0.270, 0.350] | 451 |" in text
    assert 'medfm.pipeline("visual-question-answering"' in _section(text, "How to use")


FUSION_DATA = {"dataset": "lgg_flair", "dataset_name": "TCGA-LGG (lgg_tcga_flair_seg_3ch)", "license": "not confirmed",
               "n_train": 16, "n_test": 7, "unit": "patients", "split_rule": "i % 3 == 2 -> test"}


def test_fusion_classifier_card_uses_its_own_row_of_the_run_results():
    from medfm.registry import FUSERS

    torch.manual_seed(0)
    model = FUSERS.build("3mat", modalities=["pre", "flair", "clinical"], image_encoder={"name": "resnet_test"},
                         img_size=28, clinical_features=3, dim=8, heads=2, layers=1)
    cfg = model_config(model, {"training": {"data": FUSION_DATA, "run_label": "3mat_a"}})
    res = {"split": {"test": ["p1", "p2"]}, "natural": [
        {"model": "other", "auc": 0.9, "acc": 0.9, "n": 10},
        {"model": "3mat_a", "auc": 0.61, "acc": 0.7, "auc_ci95": [0.5, 0.7], "n": 10, "n_patients": 2}]}
    card, data, text = _card(cfg, res)
    assert cards.card_kind(cfg) == "fusion_classification" and "pipeline_tag" not in data
    assert "MedMNIST" not in text and "A medfm model." not in text and "TCGA-LGG" in text
    assert "['pre', 'flair', 'clinical']" in text and "presence masks" in text and "`(3,)` float vector" in text
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} == {("AUC", 0.61), ("ACC", 0.7)}
    assert "| AUC | 0.6100 | [0.500, 0.700] |" in text
    how = _section(text, "How to use")
    assert "medfm.from_pretrained(" in how and "collate_modalities" in how and "pipeline(" not in how
    # an old checkpoint without its run label: no other model's numbers
    old = {**cfg, "training": {"data": {"dataset": "TCGA-LGG (lgg_tcga_flair_seg_3ch)"}}}
    card, _, text = _card(old, res)
    assert not card.data.eval_results and "run label is not recorded" in text and "0.9000" not in text


def test_fused_segmentation_unet_card_and_its_snippet_runs():
    from medfm.registry import FUSERS

    torch.manual_seed(0)
    model = FUSERS.build("fused_unet", modalities=["pre", "flair"], image_encoder={"name": "resnet_test"}, img_size=28,
                         decoder={"decoder_channels": [8, 8, 8, 8], "stem_channels": 8}).eval()
    cfg = model_config(model, {"training": {"data": FUSION_DATA, "run_label": "hemis"}})
    res = {"natural": [{"model": "hemis", "dice": 0.42, "dice_ci95": [0.3, 0.5], "n": 12, "n_patients": 2}]}
    card, data, text = _card(cfg, res, model_id="M")
    assert cards.card_kind(cfg) == "fusion_segmentation" and data["pipeline_tag"] == "image-segmentation"
    assert "per-pixel class logits `(B, 2, 28, 28)`" in text
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [("Dice", 0.42)]
    code = _section(text, "How to use").split("```python\n")[1].split("```")[0]
    scope = {}
    exec(code.replace('medfm.from_pretrained("M")', "model"), {"model": model}, scope)  # the snippet runs as shown
    assert scope["mask"].shape == (1, 28, 28)


def test_ssl_card_shows_the_encoder_not_a_classifier():
    from medfm.registry import OBJECTIVES

    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    cfg = model_config(OBJECTIVES.build("simclr", encoder=enc),
                       {"training": {"data": {"flag": "pneumoniamnist", "size": 28, "n_train": 10}}})
    _, data, text = _card(cfg)
    assert cards.card_kind(cfg) == "objective" and data["pipeline_tag"] == "image-feature-extraction"
    how = _section(text, "How to use")
    assert 'medfm.create_encoder("resnet_test", in_chans=1, img_size=28, pretrained="ckpt")' in how
    assert "image-classification" not in how and "MedMNIST v2" in text  # a MedMNIST flag is MedMNIST
    # a linear probe's numbers name the protocol and the labels it was fitted on (they read as plain ACC)
    probe = {"meta": {"dataset": "pneumoniamnist", "split": "test", "protocol": "linear", "label_fraction": 0.01,
                      "train_labels": {"n": 47}},
             "metrics": {"acc": 0.837, "auc": 0.9, "ece": 0.05}, "calibration": {"n_bins": 10}}
    card, _, text = _card(cfg, probe)
    evaluation = _section(text, "Evaluation")
    assert {r.metric_name for r in card.data.eval_results} == {"ACC (linear, 1% of train labels)",
                                                                 "AUC (linear, 1% of train labels)"}
    assert ("with `medfm eval` `--protocol linear`: a linear probe (logistic regression) on the frozen encoder's "
            "features, fitted on 1% of the training labels (47).") in evaluation
    assert "| ECE (10 bins) | 0.0500 |" in evaluation
    as_is = _section(_card(cfg, {**probe, "meta": {"dataset": "pneumoniamnist", "split": "test"}})[2], "Evaluation")
    assert "with `medfm eval`." in as_is and "--protocol" not in as_is


def test_old_checkpoints_without_new_keys_still_get_a_card(tmp_path):
    """config.json written before these keys existed (the real hip3d / VQA / fusion configs of that time)."""
    for cfg in ({"kind": "adapter", "name": "segmentation", "encoder": {"name": "resnet3d_test"}, "family": "cnn3d",
                 "args": {"num_classes": 2}, "training": {"data": {"dataset": "msd_hippocampus"}}},
                {"kind": "adapter", "name": "vqa", "encoder": {"name": "resnet18"}, "args": {}},
                {"kind": "fuser", "name": "3mat", "encoder": {}, "args": {}}):
        _, data, text = _card(cfg)
        assert "MedMNIST" not in text and "None" not in text and "not recorded" in text
        assert "image-classification" not in text


def test_card_cli_takes_run_results_and_refuses_another_kind(tmp_path):
    model = medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16)
    from medfm.adapters.segmentation import SegmentationModel

    ckpt = save_pretrained(SegmentationModel(model, 3, decoder={"stem_channels": 4}), tmp_path / "ckpt",
                           extra_config={"training": {"data": HIP_DATA}})
    (tmp_path / "seg.json").write_text(json.dumps(SEG_RESULTS))
    (tmp_path / "vqa.json").write_text(json.dumps(VQA_RESULTS))
    (tmp_path / "suite.json").write_text(json.dumps({"kind": "evaluation-suite", "datasets": []}))
    from medfm.cli import main

    assert main(["card", str(ckpt), "--results", str(tmp_path / "seg.json")]) == 0
    assert "| mean over classes | Dice | 0.8123 |" in (ckpt / "README.md").read_text()
    with pytest.raises(ValueError, match="results of a vqa run, but the checkpoint is a segmentation model"):
        update_card(ckpt, tmp_path / "vqa.json")
    with pytest.raises(ValueError, match="evaluation suite's summary"):
        update_card(ckpt, tmp_path / "suite.json")


def test_segmentation_run_writes_its_test_metrics_into_the_final_card(tmp_path):
    from medfm.config import from_dict
    from medfm.training.segmentation import SegmentationRecipe, run_segmentation
    from tests.helpers.segmentation_data import write_chase

    write_chase(tmp_path / "data")
    recipe = from_dict(SegmentationRecipe, {
        "data": {"dataset": "chase_db1", "patch": [32, 32], "max_train": 2, "max_test": 1},
        "encoder": {"name": "resnet_test"}, "decoder": {"stem_channels": 8}, "mode": "full",
        "train": {"epochs": 1, "batch_size": 2, "precision": "fp32", "log_every": 1, "num_threads": 1},
        "eval": {"overlays": 0, "distances": False}})
    res = run_segmentation(recipe, tmp_path / "run", data_root=str(tmp_path / "data"))
    card = ModelCard((tmp_path / "run" / "model" / "README.md").read_text())
    dice = res["summary"]["mean"]["dice"]
    assert f"| mean over classes | Dice | {dice:.4f} |" in card.text and "Not evaluated" not in card.text
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [("Dice", round(dice, 4))]
    cfg = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    data = cfg["training"]["data"]
    assert data["dataset_name"] == "CHASE_DB1" and data["n_train"] == 2 and data["n_test"] == 1
    assert data["license"] and data["source"] and cfg["n_params"].endswith("M")
    assert "**CHASE_DB1**" in card.text and "2 training / 1 test cases" in card.text
    # the card's snippet runs on this checkpoint
    code = _section(card.text, "How to use").split("```python\n")[1].split("```")[0]
    from PIL import Image

    Image.fromarray(np.zeros((40, 44, 3), np.uint8)).save(tmp_path / "image.png")
    scope = {}
    exec(code.replace('"image.png"', repr(str(tmp_path / "image.png"))), {}, scope)
    assert scope["out"]["mask"].shape == (40, 44)


def test_fusion_run_writes_each_models_test_metrics_into_its_card(tmp_path):
    from medfm.config import from_dict
    from medfm.training.fusion import FusionRecipe, run_fusion
    from tests.helpers.lgg_fusion import write_fake_lgg

    root = write_fake_lgg(tmp_path / "data", slices=2)
    recipe = from_dict(FusionRecipe, {
        "data": {"img_size": 16}, "modalities": ["flair", "clinical"], "image_encoder": {"name": "resnet_test"}, "dim": 8,
        "models": {"late": {"fuser": "late_fusion_zero_fill"}, "late_b": {"fuser": "late_fusion_zero_fill",
                                                                          "args": {"dropout": 0.1}}},
        "train": {"epochs": 1, "batch_size": 4, "precision": "fp32", "log_every": 1, "warmup_epochs": 0},
        "protocol": {"n_boot": 3, "mcar_rates": [0.5], "mnar_modalities": ["flair"]}})
    res = run_fusion(recipe, tmp_path / "run", str(root))
    for label in ("late", "late_b"):
        row = next(r for r in res["natural"] if r["model"] == label)
        card = ModelCard((tmp_path / "run" / "models" / label / "model" / "README.md").read_text())
        assert f"| ACC | {row['acc']:.4f} |" in card.text and "Not evaluated" not in card.text
        assert ("ACC", round(row["acc"], 4)) in [(r.metric_name, r.metric_value) for r in card.data.eval_results]
        assert "TCGA-LGG" in card.text and "MedMNIST" not in card.text
        assert re.search(r"2 training / 1 test patients", card.text)


def test_card_refuses_eval_results_of_other_weights(tmp_path):
    """``medfm card`` put another checkpoint's numbers (same kind) into a card with exit 0."""
    from medfm.adapters.classification import ImageClassifier
    from medfm.evaluation.report import checkpoint_hash

    def classifier(seed, name):
        torch.manual_seed(seed)
        enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
        return save_pretrained(ImageClassifier(enc, 2, task="binary-class", label_names=["normal", "pneumonia"]),
                               tmp_path / name)

    ours, other = classifier(0, "ours"), classifier(1, "other")
    results = {"meta": {"dataset": "pneumoniamnist", "split": "test", "checkpoint": str(other),
                        "checkpoint_sha256": checkpoint_hash(other)},
               "metrics": {"acc": 0.9, "auc": 0.95, "balanced_acc": 0.88}}
    (tmp_path / "other.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"measured on other weights .*other.*than .*ours"):
        update_card(ours, tmp_path / "other.json")
    assert "0.95" not in (ours / "README.md").read_text()
    results["meta"].update(checkpoint=str(ours), checkpoint_sha256=checkpoint_hash(ours))
    (tmp_path / "ours.json").write_text(json.dumps(results))
    assert "| AUC | 0.9500 |" in update_card(ours, tmp_path / "ours.json").read_text()


def test_undefined_segmentation_and_fusion_metrics_are_not_printed_as_nan():
    """A run passes its results to its card in memory, NaN included: the HD95 of a segmenter whose
    predictions are all empty and the AUC of a fuser over one-class test patients read ``nan`` in the
    card and ``.nan`` in its model-index."""
    from medfm.registry import FUSERS

    nan = float("nan")
    seg = json.loads(json.dumps(SEG_RESULTS))
    seg["summary"]["mean"]["hd95"] = nan
    seg["summary"]["per_class"]["anterior"]["hd95"] = {"mean": nan, "std": nan}
    card, _, text = _card(_seg_cfg("resnet_test"), seg)
    ev = _section(text, "Evaluation")
    assert "| mean over classes | HD95 | n/a (undefined) |  |" in ev and "| anterior | HD95 | n/a (undefined) |  |" in ev
    assert "nan" not in ev and "nan" not in str(card.data.to_dict())
    assert "HD95" not in {r.metric_name for r in card.data.eval_results}
    torch.manual_seed(0)
    model = FUSERS.build("3mat", modalities=["pre", "flair", "clinical"], image_encoder={"name": "resnet_test"},
                         img_size=28, clinical_features=3, dim=8, heads=2, layers=1)
    cfg = model_config(model, {"training": {"data": FUSION_DATA, "run_label": "m"}})
    res = {"natural": [{"model": "m", "auc": nan, "acc": 0.7, "auc_ci95": [nan, nan], "n": 10, "n_patients": 2}]}
    card, _, text = _card(cfg, res)
    assert "| AUC | n/a (undefined: the scored labels hold one class only) |  |" in _section(text, "Evaluation")
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [("ACC", 0.7)]
    assert "nan" not in _section(text, "Evaluation") and "nan" not in str(card.data.to_dict())


def test_one_rendering_rule_for_a_recorded_metric_in_every_table():
    """Every card table shows a recorded metric through ``metric_text``, which picks the undefined text
    from the key (an AUC says why it is undefined): each table used to pass its own ``undefined=`` text."""
    from medfm.card_kinds import UNDEFINED_AUC, UNDEFINED_METRIC, metric_text

    row = {"auc": None, "acc": float("nan"), "dice": 0.812345, "hd95": "garbled"}
    assert metric_text(row, "auc") == UNDEFINED_AUC
    assert metric_text(row, "acc") == UNDEFINED_METRIC
    assert metric_text(row, "dice") == "0.8123"
    assert metric_text(row, "hd95") is None and metric_text(row, "ece") is None
