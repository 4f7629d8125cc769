"""Evaluation follow-ups: the threshold rule lives in classification_metrics, kNN hands torch no read-only
array, and the fusion protocol takes the presence masks the fusion models take."""
import numpy as np
import pytest
import torch

from medfm.evaluation import protocols as P
from medfm.evaluation.fusion import check_presence, mcar_drop, mnar_drop
from medfm.evaluation.metrics import bootstrap_ci, classification_metrics

_Y = np.array([0, 1, 0, 1])
_S = np.array([[.8, .2], [.3, .7], [.6, .4], [.1, .9]])


@pytest.mark.parametrize("threshold, match", [
    (float("nan"), r"^threshold must be a finite number in \[0, 1\], got nan$"),  # every prediction was negative
    (1.5, r"^threshold must be in \[0, 1\], got 1.5$"),
    (-0.1, r"^threshold must be in \[0, 1\], got -0.1$"),
    (True, r"^threshold must be a finite number in \[0, 1\], got True"),
])
@pytest.mark.parametrize("call", [
    lambda t: classification_metrics(_Y, _S, "binary-class", threshold=t),
    lambda t: bootstrap_ci(_Y, _S, "binary-class", threshold=t, n_boot=5),
], ids=["classification_metrics", "bootstrap_ci"])
def test_a_threshold_outside_0_1_is_refused_where_it_is_used(call, threshold, match):
    with pytest.raises(ValueError, match=match):
        call(threshold)


def test_thresholds_0_and_1_are_scored():
    assert classification_metrics(_Y, _S, "binary-class", threshold=0)["acc"] == 0.5  # every score > 0
    assert classification_metrics(_Y, _S, "binary-class", threshold=np.float32(1.0))["threshold"] == 1.0


def test_knn_hands_torch_no_read_only_array_and_copies_no_writable_one(tmp_path, monkeypatch):
    # torch.from_numpy warns "The given NumPy array is not writable" (once per process, so the warning itself
    # cannot be caught reliably here): what reaches it is checked instead
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    np.save(tmp_path / "train.npy", train)
    frozen = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert not frozen.flags.writeable
    seen = []
    from_numpy = torch.from_numpy

    def spy(array):
        seen.append(array)
        return from_numpy(array)

    monkeypatch.setattr(P.torch, "from_numpy", spy)
    got = P.knn_scores(frozen, labels, frozen[:4], 3, k=3)
    assert len(seen) == 2 and all(a.flags.writeable for a in seen)
    seen.clear()
    want = P.knn_scores(train, labels, train[:4], 3, k=3)
    assert np.array_equal(got, want)
    assert np.shares_memory(seen[0], train)  # a writable float32 array is read in place, not copied


def test_fusion_drops_take_0_1_integer_presence_masks_as_the_models_do():
    # old: "the presence mask of 'a' must be a (N,) bool tensor, got torch.int64" where the fusion models take it
    ints = {"a": torch.tensor([1, 1, 0, 1]), "b": torch.tensor([1, 0, 1, 1], dtype=torch.uint8)}
    bools = {m: v.bool() for m, v in ints.items()}
    assert all(v.dtype == torch.bool for v in check_presence(ints).values())
    assert check_presence(bools)["a"] is bools["a"]  # a bool mask as it is
    for drop in (lambda p: mcar_drop(p, 0.5, torch.Generator().manual_seed(0)),
                 lambda p: mnar_drop(torch.tensor([0, 1, 0, 1]), p, ["a"], .9, .1, False, torch.Generator().manual_seed(0))):
        from_ints, from_bools = drop(ints), drop(bools)
        assert list(from_ints) == ["a", "b"]
        for m in from_ints:
            assert from_ints[m].dtype == torch.bool and torch.equal(from_ints[m], from_bools[m])


@pytest.mark.parametrize("mask, match", [
    (torch.tensor([0, 2, 1]), r"integer values \[2\]"),  # 2 would be taken as present
    (torch.tensor([.5, 1., 0.]), "got a torch.float32 tensor"),  # 0.5 would be taken as present
    (torch.ones(3, 1, dtype=torch.bool), "got a torch.bool tensor of shape \\(3, 1\\)"),
])
def test_fusion_drops_refuse_masks_the_models_refuse(mask, match):
    # one wording for every reader of a presence mask (medfm.data.multimodal.check_presence_mask): (B,), was (N,)
    with pytest.raises(ValueError, match=f"^the presence mask of 'a' must be a \\(B,\\) bool tensor .*{match}"):
        mcar_drop({"a": mask}, 0.5, torch.Generator())
