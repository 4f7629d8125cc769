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


def _evaluation(text):
    return text.split("## Evaluation")[1].split("\n## ")[0]


def test_an_undefined_auc_is_said_to_be_undefined_never_printed_as_nan(tmp_path, write_medmnist, capsys):
    """``medfm eval --data`` on a split holding one class writes ``"auc": null`` (strict JSON): the
    card dropped the AUC row without a word (the published AUC stayed beside it). The same AUC as
    NaN (a run's own results, in memory) was printed ``nan`` and put into model-index as ``.nan``."""
    import torch

    import medfm
    from medfm.adapters.classification import ImageClassifier
    from medfm.cli import main
    from medfm.data import dataset_info
    from medfm.hub import save_pretrained
    from tests.conftest import fake_medmnist_arrays

    arrays = fake_medmnist_arrays("pneumoniamnist", counts=(8, 4, 10))
    arrays["test_labels"][:] = 1
    root = write_medmnist("pneumoniamnist", arrays=arrays)
    info = dataset_info("pneumoniamnist")
    torch.manual_seed(0)
    ckpt = str(save_pretrained(ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2,
                                               info["task"], info["label_names"]), tmp_path / "c"))
    assert main(["eval", "--data", "pneumoniamnist", ckpt, "--data-root", str(root), "--output", str(tmp_path / "ev")]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["metrics"]["auc"] is None
    assert main(["card", ckpt, "--results", str(tmp_path / "ev" / "results.json")]) == 0
    capsys.readouterr()
    card = ModelCard((tmp_path / "c" / "README.md").read_text())
    ev = _evaluation(card.text)
    assert "| AUC (ranks the logits) | n/a (undefined: the scored labels hold one class only) |  |" in ev
    assert "AUC undefined for 'pneumonia'" in ev  # the warning that names the class
    assert {r.metric_name for r in card.data.eval_results} == {"ACC", "balanced ACC"}
    nan = ModelCard(build_card(BARE, {"meta": {"dataset": "x", "split": "test"}, "metrics": {"acc": 0.5, "auc": float("nan")}}))
    assert "| AUC | n/a (undefined: the scored labels hold one class only) |  |" in _evaluation(nan.text)
    assert [r.metric_name for r in nan.data.eval_results] == ["ACC"]
    assert "nan" not in _evaluation(nan.text) and "nan" not in str(nan.data.to_dict())


def test_card_refuses_a_results_file_holding_nan_or_infinity(tmp_path, capsys):
    """Python's json reads NaN and Infinity, which medfm never writes (strict JSON): an edited or
    foreign results file put ``| ACC | inf |`` and ``value: .nan`` into the card, exit 0."""
    from tests.conftest import cli_error

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(BARE))
    for literal in ("NaN", "Infinity", "-Infinity"):
        (tmp_path / "r.json").write_text('{"meta": {"dataset": "breastmnist", "split": "test"}, "metrics": {"acc": 0.8, '
                                         f'"auc": {literal}}}}}')
        code, err = cli_error(capsys, ["card", ckpt, "--results", tmp_path / "r.json"])
        assert code == 2 and f"results file {tmp_path / 'r.json'} holds {literal}, which is not JSON" in err
        assert "as null" in err and not (ckpt / "README.md").exists()
