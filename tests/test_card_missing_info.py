"""Model cards for checkpoints with little recorded: valid HF card markdown, nothing invented."""
import json

from huggingface_hub import ModelCard

from medfm.cards import build_card, update_card

BARE = {"kind": "adapter", "name": "classification", "encoder": {"name": "resnet_test"}}


def test_card_without_training_or_eval_info_invents_nothing():
    for cfg in (BARE, {}):
        text = build_card(cfg)
        card = ModelCard(text)  # parses the YAML front matter offline
        data = card.data.to_dict()
        assert data["library_name"] == "medfm" and "" not in data["tags"] and "model-index" not in data
        assert "None" not in card.text and "not recorded" in card.text
        assert " px" not in card.text and "28x28" not in card.text  # no assumed image size
        assert "Not evaluated yet" in card.text


def test_results_without_dataset_do_not_get_a_guessed_model_index():
    cfg = {**BARE, "training": {"data": {"flag": "pneumoniamnist"}}}
    card = ModelCard(build_card(cfg, {"metrics": {"acc": 0.9, "auc": True}, "ci": {"acc": {"low": 0.8}}}))
    assert "model-index" not in card.data.to_dict()  # the results do not say where 0.9 was measured
    assert "| ACC | 0.9000 |  |" in card.text and "AUC" not in card.text.split("## Evaluation")[1].split("##")[0]
    assert "**test**" not in card.text and "not recorded" in card.text
    assert "px)" not in card.text and "Splits used: not recorded" in card.text and "md5: not recorded" in card.text


def test_results_with_dataset_keep_their_model_index(tmp_path):
    cfg = {**BARE, "preprocessing": {"in_chans": 1, "img_size": 28, "mean": [0.5], "std": [0.5]}}
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "r.json").write_text(json.dumps({"meta": {"dataset": "breastmnist", "split": "val"}, "n_samples": 78,
                                                 "metrics": {"acc": 0.81234}}))
    card = ModelCard((update_card(ckpt, tmp_path / "r.json")).read_text())
    res = card.data.eval_results
    assert [(r.dataset_name, r.dataset_split, r.metric_type, r.metric_value) for r in res] == [
        ("breastmnist", "val", "accuracy", 0.8123)]
    assert "1-channel 28x28 images" in card.text and "**val** split of `breastmnist` (78 images)" in card.text
