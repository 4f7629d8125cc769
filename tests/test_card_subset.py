"""Model cards of results scored on a subset.

``medfm card CKPT --results`` of a ``medfm eval --suite ... --max-samples N`` run put the subset's
ACC/AUC (and MedMNIST-C BE/rBE) into the card and its model-index as full-test-set numbers.
(The front matter follows huggingface_hub: with results, ``model_name`` becomes model-index's ``name``.)
"""

import torch
import yaml
from huggingface_hub import ModelCard

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.cards import build_card
from medfm.cli import main
from medfm.data import dataset_info
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays

CFG = {"kind": "adapter", "name": "classification", "encoder": {"name": "resnet_test"}}
SUBSET = {"max_samples": 99, "n": 99, "of": 624, "seed": 0, "rule": "class-stratified"}


def _front_matter(text):
    return yaml.safe_load(text.split("---\n")[1])


def _evaluation(text):
    return text.split("## Evaluation")[1].split("\n## ")[0]


def test_suite_subset_results_are_named_as_a_subset_in_the_card(tmp_path, write_medmnist, capsys):
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 40)))
    info = dataset_info("pneumoniamnist")
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    ckpt = str(save_pretrained(ImageClassifier(enc, 2, info["task"], info["label_names"]), tmp_path / "c"))
    before = _front_matter((tmp_path / "c" / "README.md").read_text())
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "pneumoniamnist"}], "metrics": {"n_boot": 20},
                                     "cam": {"enabled": False}, "protocol": {"name": "as-is"},
                                     "corruptions": {"names": ["pixelate"], "severities": [1], "workers": 0}}))
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(suite), ckpt, "--max-samples", "12", "--data-root", str(root),
                 "--output", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert main(["card", ckpt, "--results", str(out / "pneumoniamnist" / "results.json")]) == 0
    capsys.readouterr()
    text = (tmp_path / "c" / "README.md").read_text()
    card = ModelCard(text)
    names = {r.metric_name for r in card.data.eval_results}
    assert names == {"ACC (12 of 40 test images)", "AUC (12 of 40 test images)", "balanced ACC (12 of 40 test images)"}
    ev = _evaluation(card.text)
    assert "Measured on 12 of the 40 **test** images of `pneumoniamnist`, a seeded class-stratified subset " \
           "(max_samples 12, seed 0)" in ev
    assert "not full-test-set numbers" in ev and "BE/rBE still divide by medmnistc's full-test-set" in ev
    assert "| MedMNIST-C BE |" in ev and "(12 images)" not in ev
    after = _front_matter(text)  # huggingface_hub's layout: the name moves into model-index
    assert after["model-index"][0]["name"] == before["model_name"] == card.data.model_name


def test_subset_joins_the_protocol_and_label_fraction_in_metric_names():
    meta = {"dataset": "pneumoniamnist", "split": "test", "protocol": "linear", "label_fraction": 0.01,
            "train_labels": {"n": 47}, "subset": SUBSET}
    text = build_card(CFG, {"meta": meta, "n_samples": 99, "metrics": {"acc": 0.8, "auc": 0.9}})
    card = ModelCard(text)
    assert [r.metric_name for r in card.data.eval_results] == [
        "ACC (linear, 1% of train labels, 99 of 624 test images)", "AUC (linear, 1% of train labels, 99 of 624 test images)"]
    ev = _evaluation(card.text)
    assert "Measured on 99 of the 624 **test** images of `pneumoniamnist`, a seeded class-stratified subset " \
           "(max_samples 99, seed 0), with `medfm eval` `--protocol linear`" in ev
    assert "BE/rBE" not in ev  # no corruptions ran
    full = ModelCard(build_card(CFG, {"meta": {**meta, "subset": None}, "n_samples": 624, "metrics": {"acc": 0.8}}))
    assert [r.metric_name for r in full.data.eval_results] == ["ACC (linear, 1% of train labels)"]
    assert "(624 images)" in full.text and "subset" not in _evaluation(full.text)
    garbled = ModelCard(build_card(CFG, {"meta": {"dataset": "x", "split": "test", "subset": {"n": "?"}},
                                         "metrics": {"acc": 0.8}}))
    assert [r.metric_name for r in garbled.data.eval_results] == ["ACC (a subset of the test images)"]
    assert "Measured on a subset of the **test** images of `x`" in garbled.text


def test_a_runs_own_warnings_reach_the_card():
    """``medfm eval`` warnings (a size other than trained, few training labels per class) used to stay
    in the run's report.md and console only."""
    warn = "scored at 64 px, but the encoder was trained at 28 px: its numbers are not the model's"
    text = build_card(CFG, {"meta": {"dataset": "adrenalmnist3d", "split": "test"}, "metrics": {"acc": 0.23},
                            "warnings": [warn]})
    ev = _evaluation(ModelCard(text).text)
    assert f"Warnings:\n\n- {warn}" in ev
    assert "Warnings:" not in _evaluation(ModelCard(build_card(CFG, {"meta": {"dataset": "x"}, "metrics": {"acc": 0.5}})).text)
