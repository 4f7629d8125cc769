"""``medfm eval --suite`` when data sets of the suite are not on disk.

None on disk: the run used to skip each one and exit 0 with "No dataset was evaluated."; it now
stops with one line (exit 2, like every missing-data error of the CLI) naming the data root and
how to get the data, writing nothing. Some on disk: the others are skipped and listed, exit 0.
"""
import json

import pytest
import torch
import yaml

from medfm.cli import main
from tests.conftest import fake_medmnist_arrays

SUITE = {"name": "s", "datasets": [{"flag": "pneumoniamnist"}, {"flag": "breastmnist"}],
         "protocol": {"name": "knn", "knn_k": 3}, "corruptions": None, "metrics": {"n_boot": 10},
         "cam": {"enabled": False}}


@pytest.fixture
def ckpt(tmp_path):
    """A 1-channel resnet_test pneumoniamnist classifier checkpoint."""
    from medfm.adapters.classification import ImageClassifier
    from medfm.data import dataset_info
    from medfm.encoders import create_encoder
    from medfm.hub import save_pretrained

    info = dataset_info("pneumoniamnist")
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    return save_pretrained(ImageClassifier(enc, info["num_classes"], info["task"], info["label_names"]),
                           tmp_path / "ckpt")


def _suite(tmp_path, **over):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, **over}))
    return path


def _eval(capsys, *argv):
    capsys.readouterr()
    code = main(["eval", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_no_data_set_on_disk_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, ckpt):
    root = tmp_path / "empty"
    (root / "medmnist").mkdir(parents=True)
    code, out, err = _eval(capsys, ckpt, "--suite", _suite(tmp_path), "--data-root", root, "--output", tmp_path / "ev")
    assert code == 2 and len(err.splitlines()) == 1 and out == ""
    assert err.startswith(f"medfm: error: no data set of suite 's' was found under {root} "
                          "(looked for pneumoniamnist, breastmnist); get the data (")
    assert "https://zenodo.org/records/" in err and f"go in {root / 'medmnist'}" in err and "--data-root" in err
    assert not (tmp_path / "ev").exists()
    code, _, err = _eval(capsys, ckpt, "--suite", _suite(tmp_path), "--data-root", root)  # default output
    assert code == 2 and "no data set of suite 's'" in err
    assert sorted(p.name for p in ckpt.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_image_folders_are_named_with_where_they_go(tmp_path, capsys, ckpt):
    from medfm.data.errors import DataFileMissingError
    from medfm.evaluation.suites import load_suite, run_suite

    suite = load_suite(_suite(tmp_path, datasets=[{"folder": "mednist"}, {"flag": "pneumoniamnist", "size": 64}]))
    with pytest.raises(DataFileMissingError) as err:
        run_suite(suite, [str(ckpt)], tmp_path / "ev", data_root=str(tmp_path), progress=False)
    assert "(looked for mednist, pneumoniamnist)" in str(err.value)
    assert f"image folders in {tmp_path}/<folder> (e.g. mednist)" in str(err.value)
    assert not (tmp_path / "ev").exists()


def test_some_data_sets_on_disk_run_and_list_the_others(tmp_path, capsys, ckpt, write_medmnist):
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(12, 4, 6)))
    code, out, err = _eval(capsys, ckpt, "--suite", _suite(tmp_path), "--data-root", root, "--output", tmp_path / "ev")
    assert code == 0, err
    skipped = f"breastmnist: skipped (not on disk: no breastmnist.npz or breastmnist_64.npz ... in {root / 'medmnist'})"
    assert skipped in out
    assert "pneumoniamnist [knn-f1]: ACC" in out
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    pneu, breast = res["datasets"]
    assert pneu["status"] == "ok" and "missing_data" not in pneu
    assert breast["status"] == "skipped" and breast["missing_data"] is True
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "## Skipped" in report and "| breastmnist | not on disk:" in report


def test_skips_for_other_reasons_are_not_missing_data(tmp_path, capsys, ckpt, write_medmnist):
    """A set on disk that no checkpoint matches is skipped, not missing; when every set is
    skipped (one missing, one with no matching checkpoint) nothing was evaluated, so the run
    stops with one line giving each set's reason (it used to exit 0) and writes nothing."""
    root = write_medmnist("breastmnist", arrays=fake_medmnist_arrays("breastmnist", counts=(12, 4, 6)))
    suite = _suite(tmp_path, protocol={"name": "as-is"})  # as-is: a checkpoint scores only its own classes
    code, out, err = _eval(capsys, ckpt, "--suite", suite, "--data-root", root, "--output", tmp_path / "ev")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("medfm: error: suite 's' evaluated no data set: pneumoniamnist: not on disk")
    assert "; breastmnist: " in err and "classes" in err.split("; breastmnist: ")[1]
    assert "no data set of suite" not in err  # not the missing-data message: breastmnist is there
    assert not (tmp_path / "ev").exists()


def test_every_set_skipped_for_want_of_a_matching_checkpoint_is_refused(tmp_path, capsys, ckpt, write_medmnist):
    root = write_medmnist("breastmnist", arrays=fake_medmnist_arrays("breastmnist", counts=(12, 4, 6)))
    suite = _suite(tmp_path, datasets=[{"flag": "breastmnist"}], protocol={"name": "as-is"})
    code, out, err = _eval(capsys, ckpt, "--suite", suite, "--data-root", root, "--output", tmp_path / "ev")
    assert code == 2 and err.startswith("medfm: error: suite 's' evaluated no data set: breastmnist: ")
    assert not (tmp_path / "ev").exists()
