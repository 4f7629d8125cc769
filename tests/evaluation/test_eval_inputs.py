"""Bad input to the evaluation package: one clear line, never a deep traceback nor a silent default.

Numbers follow the one rule of :mod:`medfm.arg_checks` (see tests/test_arg_checks_sites.py for the
other layers). Each row is ``(site, call, bad value, whole message)``; the comment says what the
old hand-written check did with that value (``True`` taken as 1, ``2.5`` truncated or passed on to
a ``TypeError``, NaN/inf accepted). Empty and one-class splits are named per dataset.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from medfm.config import ConfigError
from tests.conftest import assert_refuses, cli_error, fake_medmnist_arrays, pneumonia_classifier

NAN, INF = float("nan"), float("inf")


def _spec(cls):
    def build(**kw):
        from medfm.evaluation import suite_spec

        return getattr(suite_spec, cls)(**kw)
    return build


_metrics, _cam, _protocol, _corruptions, _dataset = (_spec(c) for c in ("MetricsSpec", "CamSpec", "ProtocolSpec",
                                                                          "CorruptionSpec", "DatasetSpec"))


def _suite(**kw):
    from medfm.evaluation.suite_spec import Suite

    return Suite(name="s", datasets=[{"folder": "x"}], **kw)


def _override(**kw):
    from medfm.evaluation.suite_spec import suite_overrides

    return suite_overrides(_suite(), **kw)


def _probe_c(v):
    from medfm.evaluation.suite_spec import parse_probe_c

    return parse_probe_c(v)


def _auto_epochs(v):
    from medfm.evaluation.finetune_protocol import auto_epochs

    return auto_epochs(v)


def _subset_indices(v):
    from medfm.evaluation.protocols import subset_indices

    return subset_indices(np.arange(10) % 2, v, 0)


def _scored_subset(v):
    from medfm.evaluation.subsets import scored_subset_indices

    return scored_subset_indices(np.arange(10) % 2, v)


F = np.random.default_rng(0).normal(size=(6, 4))
Y = np.array([0, 1, 0, 1, 0, 1])


def _knn(**kw):
    from medfm.evaluation.protocols import knn_scores

    return knn_scores(F, Y, F[:2], 2, **kw)


def _grid(v):
    from medfm.evaluation.protocols import select_probe_c

    return select_probe_c(F, Y, F, Y, "binary-class", 2, grid=v)


def _probe_fit(v):
    from medfm.evaluation.protocols import fit_linear_probe

    return fit_linear_probe(F, Y, "binary-class", 2, C=v)


def _mnar(v):
    from medfm.evaluation.fusion import mnar_drop

    present = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}
    return mnar_drop(torch.tensor([0, 1, 0, 1]), present, ["a"], v, 0.0, False, torch.Generator().manual_seed(0))


def _spacing(v):
    from medfm.evaluation.segmentation import surface_distances

    a = np.zeros((8, 8), bool)
    a[2:5, 2:5] = True
    return surface_distances(a, np.roll(a, 1, axis=0), spacing=v)


def _per_class(v):
    from medfm.evaluation.cam import sample_per_class

    return sample_per_class(Y, v)


def _predict(v):
    from medfm.evaluation.predict import predict_scores

    return predict_scores(torch.nn.Linear(1, 1), [], batch_size=v)


SITES = [
    ("MetricsSpec.n_boot", lambda v: _metrics(n_boot=v), True,
     "metrics.n_boot must be an integer >= 1, got True (bool)"),  # accepted: one resample
    ("MetricsSpec.ece_bins", lambda v: _metrics(ece_bins=v), 2.5,
     "metrics.ece_bins must be an integer >= 1, got 2.5"),  # accepted
    ("MetricsSpec.threshold", lambda v: _metrics(threshold=v), "0.5",
     "metrics.threshold must be a probability in (0, 1), got '0.5' (str)"),  # TypeError: '<' not supported
    ("CamSpec.per_class", lambda v: _cam(per_class=v), 2.5,
     "cam.per_class must be an integer >= 1 (or set cam.enabled: false), got 2.5"),  # accepted
    ("CamSpec.seed", lambda v: _cam(seed=v), NAN, "cam.seed must be an integer >= 0, got nan"),  # accepted
    ("Suite.batch_size", lambda v: _suite(batch_size=v), True,
     "batch_size must be an integer >= 1, got True (bool)"),  # accepted: batches of one image
    ("DatasetSpec.size", lambda v: _dataset(folder="x", size=v), 28.0,
     "size must be an integer >= 1 (an image side in px), got 28.0"),  # accepted
    ("DatasetSpec.max_samples", lambda v: _dataset(folder="x", max_samples=v), True,
     "max_samples must be an integer >= 1 (a number of images; or left out: the whole split), got True (bool)"),
    ("ProtocolSpec.seed", lambda v: _protocol(seed=v), 1.5, "protocol.seed must be an integer >= 0, got 1.5"),  # accepted
    ("CorruptionSpec.seed", lambda v: _corruptions(seed=v), NAN, "corruptions.seed must be an integer, got nan"),
    ("parse_probe_c", _probe_c, True, "linear_c must be a positive number or 'val', got True (bool)"),  # C = 1.0
    ("suite_overrides.batch_size", lambda v: _override(batch_size=v), 2.5,
     "--workers/--batch-size: batch_size must be an integer >= 1, got 2.5"),  # truncated to 2
    ("suite_overrides.max_samples", lambda v: _override(max_samples=v), 2.5,
     "--max-samples: max_samples must be an integer >= 1 (a number of images; or left out: the whole split), "
     "got 2.5"),  # truncated to 2
    ("auto_epochs", _auto_epochs, True, "label fraction must be in (0, 1], got True (bool)"),  # 2 epochs
    ("subset_indices", _subset_indices, 1.5, "label_fraction must be in (0, 1], got 1.5"),  # every label
    ("scored_subset_indices", _scored_subset, 2.5, "max_samples must be an integer >= 1, got 2.5"),  # TypeError
    ("knn_scores.k", lambda v: _knn(k=v), True, "k must be an integer >= 1, got True (bool)"),  # TypeError from topk
    ("knn_scores.temperature", lambda v: _knn(temperature=v), NAN,
     "temperature must be a finite number > 0, got nan"),  # accepted: NaN scores
    ("select_probe_c.grid", _grid, [NAN, 1.0], "the C grid must hold positive finite numbers, got [nan, 1.0]"),  # sklearn
    ("fit_linear_probe.C", _probe_fit, INF, "C must be a finite number > 0, got inf"),  # accepted: no regularisation
    ("mnar_drop.p_high", _mnar, True, "MNAR p_high must be a finite number in [0, 1], got True (bool)"),  # taken as 1
    ("surface_distances.spacing", _spacing, INF,
     "spacing must be one positive value or 2 positive values (finite numbers), got inf"),  # accepted
    ("sample_per_class", _per_class, 2.5, "per_class must be an integer >= 1, got 2.5"),  # TypeError: slice indices
    ("predict_scores.batch_size", _predict, 2.5, "batch_size must be an integer >= 1, got 2.5"),  # TypeError from range
]


@pytest.mark.parametrize("site, call, value, message", SITES, ids=[f"{s}={v!r}" for s, _, v, _ in SITES])
def test_each_evaluation_number_follows_the_shared_rule(site, call, value, message):
    assert_refuses(call, value, message)


def test_valid_evaluation_numbers_are_still_accepted():
    """Ints, numpy scalars, C as command-line text, negative corruption seeds (folded into each image's seed)."""
    assert _metrics(n_boot=np.int64(10), ece_bins=15, threshold=np.float32(0.5)).n_boot == 10
    assert _dataset(folder="x", size=np.int64(64), max_samples=3).size == 64
    assert _corruptions(seed=-1).seed == -1 and _protocol(seed=0).seed == 0 and _cam(per_class=1).per_class == 1
    assert _probe_c("1e-2") == 0.01 and _probe_c(2) == 2.0 and _probe_c(" VAL ") == "val"
    assert _override(batch_size=np.int64(8), max_samples=5).batch_size == 8
    assert _auto_epochs(1) == 2 and len(_subset_indices(1)) == 10 and _knn(k=np.int64(3)).shape == (2, 2)
    assert len(_spacing(np.array([1.0, 2.0]))) == 2 and len(_spacing((np.float32(0.5),))) == 2


@pytest.mark.parametrize("key, value, message", [
    ("metrics", {"ece_bins": 0}, "s.yaml: metrics.ece_bins must be an integer >= 1, got 0"),  # n_boot and ece_bins together
    ("cam", {"seed": -1}, "s.yaml: cam.seed must be an integer >= 0, got -1"),  # numpy's SeedSequence error after scoring
    ("datasets", [{"flag": "pneumoniamnist", "max_samples": 0}],
     "s.yaml: datasets[0]: max_samples must be an integer >= 1 (a number of images; or left out: the whole split), got 0"),
])
def test_suite_file_messages_name_the_file_and_key(tmp_path, key, value, message):
    from medfm.evaluation.suites import load_suite

    data = {"name": "t", "datasets": [{"flag": "pneumoniamnist"}], key: value}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_suite(tmp_path / "s.yaml")
    assert str(info.value) == message


def test_an_empty_label_fraction_list_is_named():
    """``--label-fraction ,`` said "protocol.label_fractions must be in (0, 1], got []"."""
    with pytest.raises(ConfigError, match=r"no label fraction in ','; give a comma list such as 0.01,0.1,1"):
        _override(label_fractions=",")


@pytest.mark.parametrize("flags, message", [
    ({"label_fractions": "0.1"}, "--label-fraction: the as-is protocol scores each checkpoint as it is, fitting on no "
                                 "labels; add --protocol linear, knn or finetune"),
    ({"protocol": "knn", "probe_c": "0.5"}, "--probe-c: only the linear protocol fits a probe, this run's is knn; "
                                            "add --protocol linear"),
])
def test_overrides_the_protocol_would_ignore_are_refused(flags, message):
    """``medfm eval --suite s.yaml CKPT --label-fraction 0.1`` (as-is) and ``--protocol knn --probe-c 0.5``
    ran with exit 0, the flag unused and unmentioned."""
    with pytest.raises(ConfigError) as info:
        _override(**flags)
    assert str(info.value) == message
    assert _override(protocol="linear", label_fractions="0.1", probe_c="0.5").protocol.linear_c == 0.5


def _drop(arrays, split, keep):
    arrays[f"{split}_images"], arrays[f"{split}_labels"] = arrays[f"{split}_images"][:keep], arrays[f"{split}_labels"][:keep]
    return arrays


def _grey_checkpoint(path):
    from medfm.hub import save_pretrained

    return str(save_pretrained(pneumonia_classifier(), path))


def test_empty_and_one_class_splits_skip_their_dataset_with_the_reason(tmp_path, write_medmnist):
    """An empty test split stopped the whole suite with numpy's "cannot reshape array of size 0 into
    shape (0,newaxis)"; a train split of one class with "the probe's training labels hold a single
    class ([0]); cannot fit", naming neither the dataset nor the split."""
    from medfm.evaluation.suites import load_suite, run_suite

    write_medmnist("pneumoniamnist", arrays=_drop(fake_medmnist_arrays("pneumoniamnist", counts=(16, 4, 6)), "test", 0))
    breast = fake_medmnist_arrays("breastmnist", counts=(16, 4, 6))
    breast["train_labels"][:] = 1
    root = write_medmnist("breastmnist", arrays=breast)
    data = {"name": "t", "datasets": [{"flag": "pneumoniamnist"}, {"flag": "breastmnist"}],
            "protocol": {"name": "linear"}, "metrics": {"n_boot": 10}, "cam": {"enabled": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError) as info:
        run_suite(load_suite(tmp_path / "s.yaml"), [_grey_checkpoint(tmp_path / "c")], tmp_path / "out",
                  data_root=str(root), progress=False)
    npz = root / "medmnist" / "pneumoniamnist.npz"
    assert str(info.value) == (
        f"suite 't' evaluated no data set: pneumoniamnist: the test split of pneumoniamnist ({npz}) holds no images: "
        "nothing to score; breastmnist: the train split of breastmnist holds one class only ('normal, benign'): "
        "a linear probe needs two (use --protocol knn, or another train_split)")
    assert not (tmp_path / "out").exists()


def test_an_empty_split_is_a_data_error_of_medfm_data():
    """EmptySplitError, a MedFMDataError, was defined in medfm.evaluation.evaluate, away from the data errors
    (medfm.data.errors); it lives there now and the old import still gives the same class."""
    from medfm.data import errors
    from medfm.evaluation.evaluate import EmptySplitError, check_split_has_images

    assert errors.EmptySplitError is EmptySplitError and "EmptySplitError" in errors.__all__
    with pytest.raises(errors.EmptySplitError, match=r"^the test split of bloodmnist holds no images: nothing to score$"):
        check_split_has_images([], "bloodmnist", "test", "score")
    assert issubclass(errors.EmptySplitError, errors.MedFMDataError) and issubclass(errors.EmptySplitError, ValueError)


def test_eval_data_on_an_empty_split_is_one_line(tmp_path, write_medmnist, capsys):
    """``medfm eval --data`` ended with torch's "torch.cat(): expected a non-empty list of Tensors"."""
    root = write_medmnist("pneumoniamnist", arrays=_drop(fake_medmnist_arrays("pneumoniamnist"), "val", 0))
    code, err = cli_error(capsys, ["eval", _grey_checkpoint(tmp_path / "c"), "--data", "pneumoniamnist", "--split", "val",
                                   "--data-root", root, "--output", tmp_path / "ev"])
    npz = root / "medmnist" / "pneumoniamnist.npz"
    assert code == 2 and err == f"medfm: error: the val split of pneumoniamnist ({npz}) holds no images: nothing to evaluate"
    assert not (tmp_path / "ev").exists()
