"""``medfm eval --suite ... --max-samples N`` is checked before the run by the run's own rule
(:func:`medfm.evaluation.suite_data.check_max_samples`): the classes, or a multi-label set's label groups, of the
split that is scored (:func:`medfm.evaluation.subsets.scored_subset_indices`).

Was: multi-label sets (ChestMNIST) were not checked, so a too-small N stopped the run when it reached them with
"max_samples 3 is below the number of classes (label groups) of the split"; image folders were checked against their
class folders, so a folder whose small class has no image in the scored split was refused where the run scores it.
Also :meth:`medfm.data.errors.UnknownDatasetError.for_name`'s hint, which lowercased the name first.
"""
import numpy as np
import pytest
import yaml

from medfm.config import ConfigError
from medfm.data.errors import UnknownDatasetError
from medfm.data.medmnist import MEDMNIST_FLAGS
from medfm.evaluation.suite_data import check_max_samples, load_split, scored_subset
from medfm.evaluation.suite_spec import DatasetSpec, Suite
from medfm.evaluation.suites import load_suite, run_suite
from tests.conftest import fake_medmnist_arrays, write_class_folders


def _early(spec, root):
    """The early check's verdict: None (accepted) or the ConfigError's message."""
    try:
        check_max_samples(Suite(name="t", datasets=[spec]), str(root))
    except ConfigError as err:
        return str(err)
    return None


def _run_accepts(spec, root):
    """Whether the run's subset of the scored split (what ``_evaluate_dataset`` does) takes ``max_samples``."""
    ds = load_split(spec, spec.split, spec.size, str(root), False)
    try:
        scored_subset(ds, spec.max_samples)
    except ValueError:
        return False
    return True


@pytest.fixture
def chest_root(write_medmnist):
    """ChestMNIST (14 labels, multi-label) with 40 random test images: 7 label groups (rarest positive label)."""
    return write_medmnist("chestmnist", arrays=fake_medmnist_arrays("chestmnist", counts=(8, 4, 40)))


def test_a_multi_label_set_is_checked_by_its_label_groups_as_the_run_does(chest_root):
    verdicts = {m: (_early(DatasetSpec(flag="chestmnist", max_samples=m), chest_root) is None,
                    _run_accepts(DatasetSpec(flag="chestmnist", max_samples=m), chest_root)) for m in range(1, 12)}
    assert all(early == run for early, run in verdicts.values()), verdicts
    assert [m for m, (early, _) in verdicts.items() if not early] == [1, 2, 3, 4, 5, 6]  # old: none refused
    assert _early(DatasetSpec(flag="chestmnist", max_samples=3), chest_root) == (
        "datasets[0] (chestmnist): max_samples 3 is below chestmnist's 7 label groups in its test split (an image's "
        "group is its rarest positive label, or none): the stratified subset keeps at least one image of each group; "
        "raise max_samples (--max-samples)")


def test_a_suite_refuses_a_multi_label_max_samples_before_any_checkpoint_is_loaded(tmp_path, chest_root):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "datasets": [{"flag": "chestmnist", "max_samples": 3}],
                                    "protocol": {"name": "knn"}, "cam": {"enabled": False}}))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"^s\.yaml: datasets\[0\] \(chestmnist\): max_samples 3 is below "
                                          r"chestmnist's 7 label groups in its test split"):
        run_suite(load_suite(path), [str(tmp_path / "no-checkpoint")], out, data_root=str(chest_root), progress=False)
    assert not out.exists()


def _folder(root, counts):
    """An image folder ``root`` with ``counts[cls]`` random 8 x 8 grey PNGs in each class folder."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        write_class_folders(root, (cls,), n, rng, size=(8, 8))
    return root


@pytest.mark.parametrize("rule", ["sorted", "random"])
def test_an_image_folder_is_checked_by_the_classes_of_its_scored_split(tmp_path, rule):
    folder = _folder(tmp_path / "folder", {"a": 10, "b": 10, "c": 1})  # c's one image: train, either rule
    spec = DatasetSpec(folder=str(folder), max_samples=2, split_rule=rule)
    assert _run_accepts(spec, tmp_path)  # the test split holds a and b only: 2 images of 4 scored
    assert _early(spec, tmp_path) is None  # was: "max_samples 2 is below folder's 3 classes"
    assert _early(DatasetSpec(folder=str(folder), max_samples=1, split_rule=rule), tmp_path) == (
        "datasets[0] (folder): max_samples 1 is below folder's 2 classes in its test split: the stratified subset "
        "keeps at least one image of each class; raise max_samples (--max-samples)")
    for m in range(1, 6):  # the early verdict is the run's
        one = DatasetSpec(folder=str(folder), max_samples=m, split_rule=rule)
        assert (_early(one, tmp_path) is None) == _run_accepts(one, tmp_path), m


def test_an_image_folder_whose_every_class_is_in_the_split_is_still_refused(tmp_path):
    """Guard: the folder's classes all in the test split, a max_samples below them is refused as before."""
    folder = _folder(tmp_path / "folder", {"a": 10, "b": 10, "c": 10})
    message = _early(DatasetSpec(folder=str(folder), max_samples=2), tmp_path)
    assert message is not None and "max_samples 2 is below folder's 3 classes" in message


def test_a_medmnist_split_lacking_a_class_takes_a_max_samples_the_run_takes(write_medmnist):
    """PneumoniaMNIST's test split holding normal images only: the run scores 1 of 4; it was refused (2 classes)."""
    arrays = fake_medmnist_arrays("pneumoniamnist", counts=(6, 3, 4))
    arrays["test_labels"][:] = 0
    root = write_medmnist("pneumoniamnist", arrays=arrays)
    spec = DatasetSpec(flag="pneumoniamnist", max_samples=1)
    assert _run_accepts(spec, root) and _early(spec, root) is None


@pytest.mark.parametrize("name, message", [
    ("PneumoniaMNIST", "unknown MedMNIST flag 'PneumoniaMNIST'; did you mean 'pneumoniamnist' or 'dermamnist' or "
                       "'retinamnist'?"),
    ("CHESTmnist", "unknown MedMNIST flag 'CHESTmnist'; did you mean 'chestmnist' or 'octmnist' or 'breastmnist'?"),
])
def test_the_flag_hint_names_the_flag_whatever_its_case(name, message):
    """Guard: the hint ignores case without the name being lowercased first; the name is shown as typed."""
    assert str(UnknownDatasetError.for_name(name, MEDMNIST_FLAGS, kind="MedMNIST flag")) == message


def test_the_hint_matches_mixed_case_names_as_typed():
    """Lowercasing 'ChestCT2' first matched 'chest_ct' and hid 'ChestCT', the name one letter away."""
    err = UnknownDatasetError.for_name("ChestCT2", ["chest_ct", "ChestCT"], kind="data set folder")
    assert str(err) == "unknown data set folder 'ChestCT2'; did you mean 'ChestCT'?"
