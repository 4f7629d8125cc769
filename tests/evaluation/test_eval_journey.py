"""``medfm eval`` user-journey audit on real data, reduced to small fake sets: each test failed on
the code before its fix (wrong reference numbers, a stale fine-tuned model scored under another
checkpoint's name, a fitting checkpoint ignored, unreported training-label counts, a refused val
split, an ignored ``--size``, figures listed but not shown or shown but not written)."""
import json
import re

import numpy as np
import pytest
import torch
import yaml

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.cli import main
from medfm.config import ConfigError
from medfm.data import dataset_info
from medfm.evaluation.suite_report import render_suite_markdown
from medfm.evaluation.suites import load_suite, run_suite
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays, save_tiny_bert


def _ckpt(path, flag="pneumoniamnist", encoder="resnet_test", seed=0):
    info = dataset_info(flag)
    torch.manual_seed(seed)
    enc = medfm.create_encoder(encoder, in_chans=info["n_channels"], img_size=28)
    return str(save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]), path))


def _suite(tmp_path, datasets, protocol, **over):
    data = {"name": "t", "datasets": datasets, "protocol": protocol, "metrics": {"n_boot": 20},
            "cam": {"enabled": False}, **over}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_suite(path)


def _run(acc, auc, name):
    return {"run": name, "label_fraction": 0.1, "dir": f"d/{name}", "metrics": {"acc": acc, "auc": auc,
            "balanced_acc": acc, "ece": 0.1}, "ci": {}, "per_class_recall": {"a": acc}}


def test_each_runs_reference_row_shows_its_own_numbers_and_the_ece_bins():
    """With several label fractions every run's "this checkpoint" row showed the first run's ACC/AUC
    (real PneumoniaMNIST linear-f0.1 was listed as 0.745 instead of 0.833); the summary's ECE
    header said 15 bins whatever metrics.ece_bins was."""
    res = {"suite": {"name": "s", "protocol": {"name": "linear", "label_fractions": [0.01, 1.0]},
                     "metrics": {"ece_bins": 10}},
           "checkpoints": ["c"], "versions": {"medfm": "0", "torch": "0"}, "created": "now", "wall_s": 1.0,
           "cpu_s": 1.0, "host": {"cpus": 1, "torch_threads": 1, "load_avg_start": None},
           "datasets": [{"name": "pneumoniamnist", "flag": "pneumoniamnist", "status": "ok", "checkpoint": "c",
                         "checkpoint_sha256": None, "split": "test", "size": 28, "n_samples": 4, "data_md5": "m",
                         "timing": {}, "runs": [_run(0.745, 0.804, "linear-f0.01"), _run(0.833, 0.908, "linear-f1")]}]}
    md = render_suite_markdown(res)
    rows = [line for line in md.splitlines() if line.startswith("| this checkpoint")]
    assert [r.split(" | ")[4:6] for r in rows] == [["0.745", "0.804"], ["0.833", "0.908"]]
    assert "ECE (10 bins)" in md and "ECE (15 bins)" not in md


def test_finetune_protocol_refuses_a_run_of_other_weights_or_settings(tmp_path, write_medmnist):
    """A rerun into the same --output with another checkpoint reused the old fine-tuned model and
    reported it under the new checkpoint's name and hash (real PneumoniaMNIST: identical numbers)."""
    from medfm.evaluation.finetune_protocol import SOURCE_JSON, finetune_classifier

    root = str(write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(8, 2, 2))))
    a, b = _ckpt(tmp_path / "a"), _ckpt(tmp_path / "b", seed=1)
    settings = {"mode": "linear", "augment": None, "train": {"epochs": 1, "batch_size": 8, "precision": "fp32",
                                                             "warmup_epochs": 0}}
    work = tmp_path / "out" / "pneumoniamnist" / "finetune-f1" / "train"
    enc = medfm.from_pretrained(a).encoder
    first = finetune_classifier(enc, a, "pneumoniamnist", 28, 1.0, work, settings, data_root=root)
    assert (work / SOURCE_JSON).is_file()
    again = finetune_classifier(enc, a, "pneumoniamnist", 28, 1.0, work, settings, data_root=root)  # reused
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="another checkpoint or other settings .*checkpoint .*-> .*b"):
        finetune_classifier(medfm.from_pretrained(b).encoder, b, "pneumoniamnist", 28, 1.0, work, settings,
                            data_root=root)
    with pytest.raises(ValueError, match=r"train\.epochs: 1 -> 2"):
        finetune_classifier(enc, a, "pneumoniamnist", 28, 1.0, work, {**settings, "train": {**settings["train"],
                                                                                          "epochs": 2}}, data_root=root)


def test_probe_protocols_take_the_first_checkpoint_that_fits_and_name_unused_ones(tmp_path, write_medmnist, capsys):
    """A 3D checkpoint given before a 2D one skipped every 2D set ("the checkpoint's encoder is 3D")
    and the 2D checkpoint was never mentioned."""
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(12, 2, 6)))
    ckpt3d = _ckpt(tmp_path / "c3d", "adrenalmnist3d", "resnet3d_test")
    ckpt2d = _ckpt(tmp_path / "c2d")
    spare = _ckpt(tmp_path / "spare")
    suite = _suite(tmp_path, [{"flag": "pneumoniamnist"}], {"name": "knn"})
    res = run_suite(suite, [ckpt3d, ckpt2d, spare], tmp_path / "out", data_root=str(root), progress=False)
    d = res["datasets"][0]
    assert d["status"] == "ok" and d["checkpoint"] == ckpt2d
    assert res["unused_checkpoints"] == [ckpt3d, spare]
    assert "not used by any data set" in (tmp_path / "out" / "report.md").read_text()
    suite = _suite(tmp_path, [{"flag": "pneumoniamnist"}], {"name": "knn"})
    with pytest.raises(ValueError, match="no checkpoint fits this dataset .*c3d: its encoder is 3D"):
        run_suite(suite, [ckpt3d], tmp_path / "out2", data_root=str(root), progress=False)


def test_runs_fitted_on_labels_report_the_counts_and_warn_about_tiny_classes(tmp_path, write_medmnist, capsys):
    """1 % of BreastMNIST is 5 training images, 1 malignant: nothing in the results said so."""
    arrays = fake_medmnist_arrays("breastmnist", counts=(40, 4, 6))
    arrays["train_labels"][:] = np.array([0] * 10 + [1] * 30, np.uint8)[:, None]
    root = write_medmnist("breastmnist", arrays=arrays)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "breastmnist"}], "metrics": {"n_boot": 20},
                                    "cam": {"enabled": False}, "protocol": {"name": "linear"}}))
    ckpt = _ckpt(tmp_path / "c", "breastmnist")
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(path), ckpt, "--label-fraction", "0.1,1", "--data-root", str(root),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    small, full = json.loads((out / "results.json").read_text())["datasets"][0]["runs"]
    assert small["train_labels"] == {"split": "train", "n": 4, "per_class": {"malignant": 1, "normal, benign": 3}}
    assert full["train_labels"]["per_class"] == {"malignant": 10, "normal, benign": 30} and "warnings" not in full
    assert "'malignant' has 1 label(s)" in small["warnings"][0]
    per_run = json.loads((out / small["dir"] / "results.json").read_text())
    assert per_run["meta"]["train_labels"]["n"] == 4 and per_run["warnings"] == small["warnings"]
    assert "(4 train labels)" in printed and "warning: linear probe fitted on 4 train labels" in printed
    assert "Fitted on 4 train label(s) (malignant 1, normal, benign 3)" in (out / "report.md").read_text()


def test_a_suite_may_score_the_val_split(tmp_path, write_medmnist):
    """``{split: val}`` was refused for every protocol ("the probe would be ... tuned on the split it
    is scored on"), though only ``linear_c: val`` tunes on the val split."""
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(8, 5, 3)))
    suite = _suite(tmp_path, [{"flag": "pneumoniamnist", "split": "val"}], {"name": "as-is"})
    res = run_suite(suite, [_ckpt(tmp_path / "c")], tmp_path / "out", data_root=str(root), progress=False)
    assert res["datasets"][0]["split"] == "val" and res["datasets"][0]["n_samples"] == 5
    suite = _suite(tmp_path, [{"flag": "pneumoniamnist", "split": "val"}], {"name": "linear", "linear_c": "val"})
    with pytest.raises(ConfigError, match=r"datasets\[0\] \(pneumoniamnist\) scores the val split"):
        run_suite(suite, [_ckpt(tmp_path / "c")], tmp_path / "out2", data_root=str(root), progress=False)
    assert not (tmp_path / "out2").exists()


def test_figures_in_reports_are_the_ones_written(tmp_path, write_medmnist):
    """The per-run report.md never showed cam_grid.png (only results.json listed it), and the suite
    report linked reliability.png / confusion_matrix.png for multi-label sets, which have neither."""
    root = write_medmnist("chestmnist", arrays=fake_medmnist_arrays("chestmnist", counts=(4, 2, 6)))
    suite = _suite(tmp_path, [{"flag": "chestmnist"}], {"name": "as-is"}, cam={"per_class": 1, "methods": ["eigencam"]})
    res = run_suite(suite, [_ckpt(tmp_path / "c", "chestmnist")], tmp_path / "out", data_root=str(root),
                    progress=False)
    run = res["datasets"][0]["runs"][0]
    assert "path" in run["cam"]
    assert "![cam_grid](cam_grid.png)" in (tmp_path / "out" / "chestmnist" / "report.md").read_text()
    report = (tmp_path / "out" / "report.md").read_text()
    linked = [line.split("(")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]
    assert linked == ["chestmnist/cam_grid.png"]
    assert all((tmp_path / "out" / f).is_file() for f in linked)


@pytest.mark.usefixtures("tmp_medfm_cache")
def test_zeroshot_reads_the_size_it_is_given(tmp_path, write_medmnist):
    """``medfm eval CLIP --data X --protocol zeroshot --size 64`` scored the 28 px file (the flag was ignored)."""
    from medfm.evaluation.zeroshot import zeroshot_eval
    from medfm.registry import OBJECTIVES

    root = write_medmnist("pneumoniamnist", size=64, arrays=fake_medmnist_arrays("pneumoniamnist", size=64))
    spec = {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path / "bert", ["a", "chest", "x", "ray"]))}
    torch.manual_seed(0)
    clip = OBJECTIVES.build("clip", encoder=medfm.create_encoder("resnet_test", in_chans=1, img_size=28),
                            text_encoder=spec, embed_dim=8, proj_hidden_dim=16, image_proj_layers=1)
    ckpt = medfm.save_pretrained(clip.eval(), tmp_path / "clip")
    res = zeroshot_eval(str(ckpt), "pneumoniamnist", data_root=str(root), output=tmp_path / "zs", size=64)
    assert res["meta"]["size"] == 64 and res["n_samples"] == 4
    assert main(["eval", str(ckpt), "--data", "pneumoniamnist", "--protocol", "zeroshot", "--size", "64",
                 "--data-root", str(root), "--output", str(tmp_path / "zs2")]) == 0
    assert json.loads((tmp_path / "zs2" / "results.json").read_text())["meta"]["size"] == 64


def test_cli_prints_an_undefined_auc_as_na(tmp_path, write_medmnist, capsys):
    """A scored split holding one class has no AUC (null in results.json); ``medfm eval`` then ended
    with ``TypeError: unsupported format string passed to NoneType.__format__`` after writing the report."""
    arrays = fake_medmnist_arrays("pneumoniamnist", counts=(8, 2, 4))
    arrays["test_labels"][:] = 1
    root = str(write_medmnist("pneumoniamnist", arrays=arrays))
    ckpt = _ckpt(tmp_path / "c")
    assert main(["eval", ckpt, "--data", "pneumoniamnist", "--data-root", root, "--output", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "results.json").read_text())["metrics"]["auc"] is None
    assert "AUC n/a" in capsys.readouterr().out
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "pneumoniamnist"}], "metrics": {"n_boot": 20},
                                    "cam": {"enabled": False}}))
    assert main(["eval", "--suite", str(path), ckpt, "--data-root", root, "--output", str(tmp_path / "s")]) == 0
    assert re.search(r"pneumoniamnist \[as-is\]: ACC \d\.\d{4}  AUC n/a", capsys.readouterr().out)


def test_eval_at_another_size_than_the_encoder_warns(tmp_path, write_medmnist, capsys):
    """A 28 px classifier scored on the 64 px file used to be scored without a word (a 28^3
    AdrenalMNIST3D classifier on the 64^3 file: ACC 0.23 against 0.81)."""
    root = write_medmnist("pneumoniamnist", size=64)
    write_medmnist("pneumoniamnist")
    ckpt = _ckpt(tmp_path / "c")
    args = ["eval", ckpt, "--data", "pneumoniamnist", "--data-root", str(root)]
    assert main(args + ["--size", "64", "--output", str(tmp_path / "e64")]) == 0
    printed = capsys.readouterr().out
    assert "warning: evaluated at size 64 but the encoder was built for 28 pixels a side" in printed
    res = json.loads((tmp_path / "e64" / "results.json").read_text())
    assert any("size 64" in w for w in res["warnings"]) and "size 64" in (tmp_path / "e64" / "report.md").read_text()
    assert main(args + ["--output", str(tmp_path / "e28")]) == 0  # its own size: no such warning
    assert "evaluated at size" not in capsys.readouterr().out
