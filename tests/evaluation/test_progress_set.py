"""medfm.evaluation.array_sets.ProgressSet: batches pass through unchanged, the bar counts each image once."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from medfm.adapters.classification import ImageClassifier
from medfm.encoders import create_encoder
from medfm.evaluation.array_sets import ArraySet, ProgressSet
from medfm.evaluation.predict import predict_scores
from medfm.evaluation.protocols import extract_features


class _Counter:
    """Stands in for a tqdm bar: sums what ``update`` is given."""

    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def _set(n=13):
    rng = np.random.default_rng(0)
    like = SimpleNamespace(labels=rng.integers(0, 2, (n, 1)), task="binary-class", num_classes=2,
                           label_names=["a", "b"], n_channels=1, size=28, md5="x", flag="pneumoniamnist")
    return ArraySet(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), like)


def test_batches_and_attributes_pass_through_unchanged():
    ds = _set()
    view = ProgressSet(ds, _Counter())
    assert len(view) == len(ds)
    assert (view.task, view.num_classes, view.size) == (ds.task, ds.num_classes, ds.size)
    idx = torch.tensor([3, 0, 7])
    got, want = view.get_batch(idx), ds.get_batch(idx)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key])


def test_model_outputs_identical_and_each_image_counted_once():
    ds = _set()
    torch.manual_seed(0)
    model = ImageClassifier(create_encoder("resnet_test", in_chans=1, img_size=28), 2, "binary-class", ["a", "b"])
    bar = _Counter()
    np.testing.assert_array_equal(predict_scores(model, ProgressSet(ds, bar), batch_size=5),
                                  predict_scores(model, ds, batch_size=5))
    assert bar.n == len(ds)
    bar = _Counter()  # extract_features fetches a 1-image probe batch before its pass: not counted twice
    np.testing.assert_array_equal(extract_features(model.encoder, ProgressSet(ds, bar), batch_size=4),
                                  extract_features(model.encoder, ds, batch_size=4))
    assert bar.n == len(ds)


def test_views_sharing_a_bar_add_up():
    bar = _Counter()
    for n in (5, 9):
        view = ProgressSet(_set(n), bar)
        for start in range(0, n, 2):
            view.get_batch(torch.arange(start, min(n, start + 2)))
        view.get_batch(torch.arange(0, 0))  # an empty batch moves nothing
    assert bar.n == 14


@pytest.mark.parametrize("flag,as_rgb", [("pneumoniamnist", False), ("pneumoniamnist", True), ("bloodmnist", False),
                                         ("adrenalmnist3d", False), ("adrenalmnist3d", True), ("chestmnist", False)])
def test_array_set_batches_equal_the_dataset_it_copies(write_medmnist, flag, as_rgb):
    """An ArraySet of a dataset's images gives that dataset's batches bit for bit (layout, grey
    repeated to RGB, multi-label labels), through get_batch and __getitem__ alike."""
    from medfm.data.medmnist import MedMNISTDataset

    ds = MedMNISTDataset(flag, data_root=write_medmnist(flag), as_rgb=as_rgb)
    copy = ArraySet(ds.images.copy(), ds)
    idx = torch.tensor([2, 0, 1, 1])
    got, want = copy.get_batch(idx), ds.get_batch(idx)
    assert torch.equal(got["image"], want["image"]) and torch.equal(got["label"], want["label"])
    assert got["label"].dtype == want["label"].dtype
    assert torch.equal(copy[1]["image"], ds[1]["image"]) and torch.equal(copy[1]["label"], ds[1]["label"])


def test_array_set_refuses_non_integer_indices():
    """Float indices were truncated to long silently; now the dataset contract's error."""
    ds = _set()
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.tensor([0.7, 1.2]))
    with pytest.raises(ValueError, match="1-D integer"):
        ds.get_batch(torch.zeros(2, 2, dtype=torch.long))
