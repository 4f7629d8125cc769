"""One rule, one wording: MedMNIST split names, class/label names, and a recipe's data set name.

- A recipe's ``data.val_split`` and a suite dataset's ``split`` / ``train_split`` / ``val_split`` had their own
  split checks ("data.val_split must be one of ('train', 'val', 'test') ...", "split must be one of train, val,
  test, got 'tset'"), without the "did you mean" of :func:`medfm.data.medmnist.check_medmnist_split`; all now go
  through :func:`medfm.data.medmnist_info.check_split` (torch-free), each naming its key first.
- the adapters' ``check_label_names`` (gone: they call :func:`medfm.evaluation.metrics.label_name_list`) said
  "1 label names given for 2 classes" and "got str 'ab'" where the metrics and figures said "got 1 label_names for
  2 classes" and "got 'ab' (str)"; it is that rule now.
- ``FinetuneRecipe(data=DataConfig(dataset="typo"))`` was refused by the plain DataConfig as an "unknown MedMNIST
  data set or corpus", a name a fine-tuning recipe refuses; the recipe that takes a plain DataConfig now checks
  its name, in its own words.
"""
from __future__ import annotations

import pytest

from medfm.config import ConfigError, from_dict
from medfm.data.errors import UnknownDatasetError, UnknownSplitError

TSET = "unknown split 'tset' for MedMNIST 'pneumoniamnist'; did you mean 'test'?"


def test_a_recipe_val_split_is_refused_by_the_medmnist_split_rule():
    from medfm.training.recipes import DataConfig, FinetuneRecipe

    with pytest.raises(UnknownSplitError) as info:
        DataConfig(val_split="tset")
    assert str(info.value) == f"data.val_split: {TSET}"
    with pytest.raises(ConfigError) as info:
        from_dict(FinetuneRecipe, {"data": {"val_split": "validation"}}, where="r.yaml")
    assert str(info.value) == ("r.yaml: data.val_split: unknown split 'validation' for MedMNIST 'pneumoniamnist' "
                               "(expected one of: train, val, test)")
    assert DataConfig(val_split=None).val_split is None and DataConfig(val_split="test").val_split == "test"


def test_a_suite_dataset_split_is_refused_by_the_same_rule():
    from medfm.evaluation.suite_spec import DatasetSpec

    with pytest.raises(UnknownSplitError) as info:
        DatasetSpec(flag="pneumoniamnist", split="tset")
    assert str(info.value) == f"split: {TSET}"
    with pytest.raises(UnknownSplitError) as info:
        DatasetSpec(folder="mednist", train_split="trian")
    assert str(info.value) == "train_split: unknown split 'trian' for image folder 'mednist'; did you mean 'train'?"
    with pytest.raises(UnknownSplitError, match=r"^val_split: unknown split 1 for MedMNIST 'breastmnist' "
                                                r"\(expected one of: train, val, test\)$"):
        DatasetSpec(flag="breastmnist", val_split=1)  # not a string: no hint, the valid names
    spec = DatasetSpec(flag="pneumoniamnist", split="val", train_split="train", val_split="test")
    assert (spec.split, spec.train_split, spec.val_split) == ("val", "train", "test")


def test_the_split_rule_is_one_torch_free_function():
    import medfm.data.medmnist as medmnist
    import medfm.data.medmnist_info as info

    assert medmnist.check_medmnist_split is info.check_medmnist_split
    with pytest.raises(UnknownSplitError) as err:
        info.check_medmnist_split("pneumoniamnist", "tset")
    assert str(err.value) == TSET
    assert info.check_split("val", "image folder 'x'", "where") == "val"


def test_a_plain_data_section_is_checked_in_the_words_of_its_recipe():
    from medfm.training.recipes import DataConfig, FinetuneRecipe, PretrainRecipe

    hint = "'pneumonimnist'; did you mean 'pneumoniamnist' or 'dermamnist'?"
    with pytest.raises(UnknownDatasetError) as info:
        FinetuneRecipe(data=DataConfig(dataset="pneumonimnist"))
    assert str(info.value) == f"data.dataset: unknown MedMNIST data set {hint}"  # no "or corpus"
    with pytest.raises(UnknownDatasetError) as info:
        PretrainRecipe(data=DataConfig(dataset="corpsu"))
    assert str(info.value) == "data.dataset: unknown MedMNIST data set or corpus 'corpsu'; did you mean 'corpus'?"
    with pytest.raises(ConfigError, match=r"^r.yaml: data.dataset: unknown MedMNIST data set or corpus 'corpsu'"):
        from_dict(PretrainRecipe, {"data": {"dataset": "corpsu"}}, where="r.yaml")
    assert PretrainRecipe(data=DataConfig(dataset="corpus", size=64)).data.dataset == "corpus"


@pytest.mark.parametrize("names", [["a"], "ab", {"a", "b"}, [None, "b"], ["a", "b", "c"]])  # [None, "b"]: a guard
def test_the_adapters_label_names_are_the_metrics_rule(names):
    """A classifier's and a segmenter's bad label names get the metrics' message, word for word."""
    import medfm
    from medfm.adapters.classification import ImageClassifier
    from medfm.adapters.segmentation import SegmentationModel
    from medfm.evaluation.metrics import label_name_list

    with pytest.raises(ValueError) as metrics:
        label_name_list(names, 2)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    for build in (lambda: ImageClassifier(enc, num_classes=2, label_names=names),
                  lambda: SegmentationModel(enc, num_classes=2, label_names=names)):
        with pytest.raises(ValueError) as adapter:
            build()
        assert str(metrics.value) in str(adapter.value)


def test_the_adapters_label_names_count_message():
    import medfm
    from medfm.adapters.classification import ImageClassifier

    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=16)
    with pytest.raises(ValueError, match=r"^got 1 label_names for 2 classes$"):
        ImageClassifier(enc, num_classes=2, label_names=["a"])
    assert ImageClassifier(enc, num_classes=2, label_names=(0, "b")).label_names == ["0", "b"]
