"""``medfm eval --suite`` follow-ups on small fake MedMNIST sets; each test failed on the code before
its fix: an output folder mixing two evaluations, a finetune ``train_split`` silently ignored, the
fine-tuning label subset derived twice, no way to score a reduced test set, CAM captions cut at
10 characters, MedMNIST-C reference rows in clean-only reports and a "clean" time that covered
the probe's fitting."""
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
from medfm.data import MedMNISTDataset, dataset_info
from medfm.evaluation.suites import load_suite, run_suite
from medfm.hub import load_config, save_pretrained
from tests.conftest import fake_medmnist_arrays

FINETUNE = {"mode": "linear", "augment": None,
            "train": {"epochs": 1, "batch_size": 8, "precision": "fp32", "warmup_epochs": 0}}


def _ckpt(path, flag="pneumoniamnist"):
    info = dataset_info(flag)
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=info["n_channels"], img_size=28)
    return str(save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]), path))


def _suite(tmp_path, name="s", datasets=None, **over):
    data = {"name": "t", "datasets": datasets or [{"flag": "pneumoniamnist"}], "metrics": {"n_boot": 20},
            "cam": {"enabled": False}, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def root(write_medmnist):
    return write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 40)))


def test_a_rerun_replaces_the_earlier_report_whole_and_a_foreign_folder_is_refused(tmp_path, root, capsys):
    """A second suite into the same --output kept the first one's per-run folders and figures
    next to the new report; a folder of other files was written into."""
    ckpt, out = _ckpt(tmp_path / "c"), tmp_path / "out"
    common = [ckpt, "--data-root", str(root), "--output", str(out)]
    linear = _suite(tmp_path, "lin", protocol={"name": "linear", "label_fractions": [0.5, 1.0]})
    assert main(["eval", "--suite", str(linear)] + common) == 0
    assert (out / "pneumoniamnist" / "linear-f0.5" / "report.md").is_file()
    assert main(["eval", "--suite", str(_suite(tmp_path, "asis", protocol={"name": "as-is"}))] + common) == 0
    assert sorted(p.name for p in (out / "pneumoniamnist").iterdir()) == [
        "confusion_matrix.png", "reliability.png", "report.md", "results.json", "roc.png"]
    assert "replaced the earlier evaluation" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["suite"]["protocol"]["name"] == "as-is"
    before = (out / "results.json").read_text()
    missing = load_suite(_suite(tmp_path, "blood", datasets=[{"flag": "bloodmnist"}]))
    with pytest.raises(Exception, match="no data set"):  # a failed run leaves the earlier report as it was
        run_suite(missing, [ckpt], out, data_root=str(root), progress=False)
    assert (out / "results.json").read_text() == before and (out / "pneumoniamnist" / "roc.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging folder left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["eval", "--suite", str(linear), ckpt, "--data-root", str(root), "--output", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "holds no earlier evaluation-suite report (e.g. notes.txt)" in err and err.count("\n") == 1
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    from medfm.evaluation.suites import earlier_suite_report

    left = tmp_path / "left" / "pneumoniamnist" / "finetune-f1" / "train"  # an interrupted finetune suite's run
    left.mkdir(parents=True)
    (left / "config.yaml").write_text("x")
    assert earlier_suite_report(tmp_path / "left") is False and earlier_suite_report(out) is True


def test_finetune_refuses_another_train_split_and_shares_the_label_subset_rule(tmp_path, root, monkeypatch):
    """train_split: val was ignored (the run fine-tuned on train and reported 'train'); the reported
    label counts re-derived run_finetune's subset rule instead of calling it."""
    ckpt = _ckpt(tmp_path / "c")
    protocol = {"name": "finetune", "label_fractions": [0.5], "finetune": FINETUNE}
    bad = load_suite(_suite(tmp_path, "val", datasets=[{"flag": "pneumoniamnist", "train_split": "val"}],
                            protocol=protocol))
    with pytest.raises(ConfigError, match="train_split 'val'.*fine-tunes on the train split only") as err:
        run_suite(bad, [ckpt], tmp_path / "bad", data_root=str(root), progress=False)
    assert str(err.value).startswith("val.yaml: datasets[0] (pneumoniamnist) has")  # the file, as every suite error
    assert not (tmp_path / "bad").exists()

    import medfm.training.runs as runs

    rule, calls = runs.finetune_label_indices, []

    def first_class_only(recipe, labels):  # another rule: both sides must follow it
        calls.append(len(labels))
        keep = rule(recipe, labels)
        return keep[np.asarray(labels).reshape(len(labels), -1)[keep, 0] == 0]

    monkeypatch.setattr(runs, "finetune_label_indices", first_class_only)
    out = tmp_path / "out"
    res = run_suite(load_suite(_suite(tmp_path, "ft", protocol=protocol)), [ckpt], out, data_root=str(root),
                    progress=False)
    run = res["datasets"][0]["runs"][0]
    trained = load_config(out / "pneumoniamnist" / "finetune-f0.5" / "train" / "model")["training"]["data"]["n_train"]
    assert run["train_labels"]["n"] == trained and run["train_labels"]["per_class"]["pneumonia"] == 0
    assert calls == [16, 16]  # run_finetune and the suite's counts
    sha = (out / "pneumoniamnist" / "finetune-f0.5" / "train" / "model" / "model.safetensors").read_bytes()
    again = run_suite(load_suite(_suite(tmp_path, "ft", protocol=protocol)), [ckpt], out, data_root=str(root),
                      progress=False)  # a rerun replaces the report and reuses the fine-tuned model
    assert again["datasets"][0]["runs"][0]["metrics"] == run["metrics"] and calls == [16, 16, 16]
    assert (out / "pneumoniamnist" / "finetune-f0.5" / "train" / "model" / "model.safetensors").read_bytes() == sha


def test_max_samples_scores_one_stratified_subset_clean_and_corrupted(tmp_path, root, capsys):
    """The MedMNIST-C suite could only run on the whole test split (404 s for PneumoniaMNIST)."""
    from medfm.evaluation.subsets import scored_subset_indices

    labels = MedMNISTDataset("pneumoniamnist", split="test", data_root=str(root)).labels
    idx = scored_subset_indices(labels, 12)
    assert len(idx) <= 12 and set(labels[idx, 0]) == set(labels[:, 0])
    assert np.array_equal(idx, scored_subset_indices(labels, 12)) and set(scored_subset_indices(labels, 6)) <= set(idx)
    path = _suite(tmp_path, datasets=[{"flag": "pneumoniamnist", "max_samples": 30}], protocol={"name": "as-is"},
                  corruptions={"names": ["pixelate"], "severities": [1], "workers": 0})
    one = load_suite(_suite(tmp_path, "one", datasets=[{"flag": "pneumoniamnist", "max_samples": 1}]))
    with pytest.raises(ConfigError, match="max_samples 1 is below pneumoniamnist's 2 classes"):  # a set on disk
        run_suite(one, [str(tmp_path / "c")], tmp_path / "one", data_root=str(root), progress=False)
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["eval", "--suite", str(path), _ckpt(tmp_path / "c"), "--max-samples", "12", "--data-root", str(root),
                 "--output", str(out), "--cache-dir", str(cache)]) == 0  # the command line wins over the YAML
    assert "  scored 12 of 40 test images (max_samples)" in capsys.readouterr().out
    d = json.loads((out / "results.json").read_text())["datasets"][0]
    assert d["subset"]["indices"] == idx.tolist() and d["subset"]["of"] == 40 and d["n_samples"] == 12
    assert d["corruptions"]["images_scored"] == 12
    (cached,) = cache.rglob("*.npz")  # the subset's own file, named by its indices: the full-split cache untouched
    assert re.search(r"_i[0-9a-f]{16}\.npz$", cached.name)
    per_run = json.loads((out / "pneumoniamnist" / "results.json").read_text())
    assert per_run["n_samples"] == 12 and per_run["meta"]["subset"]["n"] == 12 and per_run["meta"]["references"] == {}
    report = (out / "report.md").read_text()
    assert "| 12 of 40 |" in report and "**Subset:** 12 of the 40 test images" in report
    assert "MedViT-small" not in report and "ResNet-18" not in report


def test_cam_captions_keep_whole_label_names_without_overlap(write_medmnist, tmp_path, monkeypatch):
    """Captions were cut at 10 characters: "erythrobla", "immature g"."""
    pytest.importorskip("pytorch_grad_cam")
    from medfm.evaluation import cam, plots

    root = write_medmnist("bloodmnist", arrays=fake_medmnist_arrays("bloodmnist", counts=(2, 2, 24)))
    ds = MedMNISTDataset("bloodmnist", split="test", data_root=str(root))
    clf = medfm.from_pretrained(_ckpt(tmp_path / "c", "bloodmnist")).eval()
    figures, save = [], plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    cam.cam_grid(clf, ds, tmp_path / "grid.png", per_class=1, methods=("eigencam",))
    fig = figures[0]
    renderer = fig.canvas.get_renderer()
    top = [ax for ax in fig.axes if ax.get_title()]
    shown = " ".join(ax.get_title().replace("\n", " ") for ax in top)
    for name in ds.label_names:
        assert f"true {name}" in shown, name
    boxes = [ax.title.get_window_extent(renderer) for ax in top]
    figure_box = fig.bbox
    for i, box in enumerate(boxes):
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and box.y1 <= figure_box.y1
        assert not any(box.overlaps(other) for other in boxes[i + 1:])
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)


def test_clean_only_reports_show_no_medmnist_c_reference_and_name_their_timing(tmp_path, root):
    """A clean-only run listed MedViT-small's MedMNIST-C row; "clean" timed the probe's train
    features and fit together with the test features."""
    ckpt = _ckpt(tmp_path / "c")
    res = run_suite(load_suite(_suite(tmp_path, protocol={"name": "as-is"})), [ckpt], tmp_path / "a",
                    data_root=str(root), progress=False)
    report = (tmp_path / "a" / "report.md").read_text()
    assert "MedViT-small" not in report and "MedMNIST v2 ResNet-18 (28) (published)" in report
    per_run = json.loads((tmp_path / "a" / "pneumoniamnist" / "results.json").read_text())
    assert list(per_run["meta"]["references"]) == ["MedMNIST v2 ResNet-18 (28)"]
    assert list(res["datasets"][0]["timing"]) == ["load", "clean_inference", "metrics_reports", "total"]
    res = run_suite(load_suite(_suite(tmp_path, protocol={"name": "knn"})), [ckpt], tmp_path / "k",
                    data_root=str(root), progress=False)
    assert list(res["datasets"][0]["timing"]) == ["load", "train_features", "clean_features", "knn_scoring",
                                                  "metrics_reports", "total"]
    assert "train features " in (tmp_path / "k" / "report.md").read_text()


@pytest.mark.parametrize("progress", [False, True])
def test_probe_feature_bars_follow_the_progress_flag(tmp_path, root, capsys, progress):
    """``run_suite(progress=False)`` still drew the linear probe's train-feature bar."""
    suite = load_suite(_suite(tmp_path, protocol={"name": "linear", "label_fractions": [1.0]}))
    run_suite(suite, [_ckpt(tmp_path / "c")], tmp_path / "o", data_root=str(root), progress=progress)
    err = capsys.readouterr().err
    assert ("pneumoniamnist train features" in err) is progress
