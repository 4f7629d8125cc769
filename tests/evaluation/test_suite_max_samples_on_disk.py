"""A suite's ``max_samples`` (``--max-samples``) is checked against the classes of the data sets that will be scored,
those on disk (:func:`medfm.evaluation.suite_data.check_max_samples`, by the suite's skip rule for absent data:
:func:`medfm.evaluation.suite_data.classes_on_disk`), before any checkpoint is loaded or anything is written.

Was: every data set of the suite was checked when the suite was read, absent ones too:
``eval_suites/medmnist_c.yaml --max-samples 10`` was refused for OrganAMNIST's 11 classes although OrganAMNIST was
not on disk and would have been skipped.
"""
import json

import pytest
import yaml

from medfm.cli import main
from medfm.config import ConfigError
from medfm.data.errors import DataFileMissingError
from medfm.evaluation.suites import load_suite, run_suite
from medfm.hub import save_pretrained
from tests.conftest import fake_medmnist_arrays, pneumonia_classifier, write_grey_image


@pytest.fixture
def root(write_medmnist):
    """A data root holding PneumoniaMNIST (2 classes, 40 test images) and no OrganAMNIST (11 classes)."""
    return write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 40)))


def _suite(tmp_path, datasets, name="s"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "datasets": datasets, "metrics": {"n_boot": 20},
                                    "cam": {"enabled": False}}))
    return path


def _ckpt(path):
    return str(save_pretrained(pneumonia_classifier(), path))


def test_max_samples_below_the_classes_of_a_set_not_on_disk_runs_and_skips_it(tmp_path, root, capsys):
    path = _suite(tmp_path, [{"flag": "pneumoniamnist"}, {"flag": "organamnist"}])
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(path), _ckpt(tmp_path / "c"), "--max-samples", "10", "--data-root", str(root),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "organamnist: skipped (not on disk: no organamnist.npz or organamnist_64.npz ..." in printed
    assert "  scored 10 of 40 test images (max_samples)" in printed
    pneumonia, organ = json.loads((out / "results.json").read_text())["datasets"]
    assert pneumonia["subset"]["n"] == 10 and organ["missing_data"] is True


def test_a_suite_files_max_samples_for_a_set_not_on_disk_is_read_and_the_set_skipped(tmp_path, root):
    suite = load_suite(_suite(tmp_path, [{"flag": "pneumoniamnist", "max_samples": 12},
                                         {"flag": "organamnist", "max_samples": 2}]))  # was refused here
    res = run_suite(suite, [_ckpt(tmp_path / "c")], tmp_path / "out", data_root=str(root), progress=False)
    assert [d["status"] for d in res["datasets"]] == ["ok", "skipped"]
    assert res["datasets"][0]["n_samples"] == 12


def test_max_samples_below_the_classes_of_a_set_on_disk_is_refused_before_anything_is_loaded(tmp_path, root):
    """Named with the suite file and the data set; the checkpoint (not there) is never loaded, no folder made."""
    suite = load_suite(_suite(tmp_path, [{"flag": "organamnist"}, {"flag": "pneumoniamnist", "max_samples": 1}]))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run_suite(suite, [str(tmp_path / "no-checkpoint")], out, data_root=str(root), progress=False)
    assert str(err.value) == ("s.yaml: datasets[1] (pneumoniamnist): max_samples 1 is below pneumoniamnist's 2 "
                              "classes in its test split: the stratified subset keeps at least one image of each "
                              "class; raise max_samples (--max-samples)")
    assert not out.exists()


def test_the_command_line_refuses_it_before_the_checkpoint_is_loaded(tmp_path, root, capsys):
    path = _suite(tmp_path, [{"flag": "pneumoniamnist"}])
    missing = tmp_path / "no-checkpoint"
    missing.mkdir()
    (missing / "config.json").write_text("{}")  # passes the early path check; loading it would fail
    assert main(["eval", "--suite", str(path), str(missing), "--max-samples", "1", "--data-root", str(root),
                 "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == ("medfm: error: s.yaml: datasets[0] (pneumoniamnist): max_samples 1 is below "
                                       "pneumoniamnist's 2 classes in its test split: the stratified subset keeps at "
                                       "least one image of each class; raise max_samples (--max-samples)\n")
    assert not (tmp_path / "out").exists()


def test_an_image_folders_classes_count_too_and_a_missing_folder_is_skipped(tmp_path, root):
    folder = tmp_path / "folder"
    for cls in ("a", "b", "c"):
        for i in range(5):  # the test split (sorted rule): one image of each class (with 2, none: the run skips it)
            write_grey_image(folder / cls / f"{i}.png")
    suite = load_suite(_suite(tmp_path, [{"folder": str(folder), "max_samples": 2},
                                         {"folder": str(tmp_path / "nowhere"), "max_samples": 1}]))
    with pytest.raises(ConfigError, match=r"^s\.yaml: datasets\[0\] \(folder\): max_samples 2 is below folder's 3 "):
        run_suite(suite, [str(tmp_path / "no-checkpoint")], tmp_path / "out", data_root=str(root), progress=False)
    suite.datasets = suite.datasets[1:]  # the missing folder alone: not checked, and then no data at all
    with pytest.raises(DataFileMissingError):
        run_suite(suite, [str(tmp_path / "no-checkpoint")], tmp_path / "out", data_root=str(root), progress=False)
