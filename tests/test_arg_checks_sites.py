"""Every numeric-argument check outside the objectives and the encoder families follows the one rule
of :mod:`medfm.arg_checks` (see tests/test_arg_checks.py for the rule itself).

Each row is ``(site, call, bad value, whole message)``. These sites used hand-written copies
(``int(x) != x``, ``x < 1``, ``0 <= p <= 1``) that took ``True`` for 1, ``2.5``/``8.0`` for an
integer, NaN or inf for a finite number, and crashed with a ``TypeError`` (or numpy's "cannot
convert float NaN to integer") on a string or NaN; the value each row gives was accepted or
answered that way before (noted per row).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_refuses

NAN, INF = float("nan"), float("inf")


def _encoder(name="resnet_test", **kw):
    from medfm.encoders import create_encoder

    return create_encoder(name, **{"in_chans": 1, "img_size": 32, **kw})


def _cheb(v):
    from medfm.encoders.layers.kan import ChebyshevBasis

    return ChebyshevBasis(degree=v)


def _rbf(v):
    from medfm.encoders.layers.kan import GaussianRBFBasis

    return GaussianRBFBasis(num_grids=v)


def _na(**kw):
    from medfm.encoders.layers.neighborhood_attention import NeighborhoodAttention2D

    return NeighborhoodAttention2D(8, 2, **kw)


def _head(v):
    from medfm.adapters.text_seg import check_head_options

    return check_head_options({"layers": v})


def _seg_model(v):
    from medfm.adapters.segmentation import SegmentationModel

    return SegmentationModel(_encoder(), num_classes=v)


def _overlap(v):
    from medfm.adapters.segmentation import check_overlap

    return check_overlap(v)


def _crop_margin(v):
    from medfm.adapters.segmentation import default_inference

    return default_inference(_encoder("resnet3d_test"), {"intensity": "brain_percentile", "crop_margin": v})


def _dataclass(module, cls):
    def build(**kw):
        import importlib

        return getattr(importlib.import_module(module), cls)(**kw)
    return build


_lora = _dataclass("medfm.adapters.lora", "LoraSettings")
_train = _dataclass("medfm.training.loop", "TrainConfig")
_text_task = _dataclass("medfm.training.text_segmentation", "TextTaskConfig")
_seg_eval = _dataclass("medfm.training.segmentation", "SegEvalConfig")
_seg_data = _dataclass("medfm.training.seg_tasks", "SegDataConfig")
_views = _dataclass("medfm.data.views", "ViewConfig")
_corruptions = _dataclass("medfm.evaluation.suite_spec", "CorruptionSpec")
_protocol = _dataclass("medfm.evaluation.suite_spec", "ProtocolSpec")


def _target_weights(weights):
    from medfm.adapters.text_seg import check_target_weights

    return check_target_weights(weights, len(weights))


def _lgg(v):
    from medfm.data.lgg_fusion import LGGFusionSet

    return LGGFusionSet(img_size=v, patients=[])  # checked before any file is read


def _bbox(v):
    from medfm.data.brats import brain_bbox

    return brain_bbox(np.ones((4, 4, 4), bool), margin=v)


def _text_encoder(v):
    from medfm.text.encoders import HFTextEncoder

    return HFTextEncoder("/no/such/model", max_length=v)  # checked before the model is looked for


Y, S = np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.6])
MASK_A = np.zeros((8, 8), bool)
MASK_A[2:5, 2:5] = True
MASK_B = np.roll(MASK_A, 1, axis=0)


def _boot(**kw):
    from medfm.evaluation.metrics import bootstrap_ci

    return bootstrap_ci(Y, S, "binary-class", metric="acc", **kw)


def _boot_mean(**kw):
    from medfm.evaluation.metrics import bootstrap_mean_ci

    return bootstrap_mean_ci([1.0, 2.0, 3.0], **kw)


def _ece(v):
    from medfm.evaluation.calibration import expected_calibration_error

    return expected_calibration_error(Y, S, n_bins=v)


def _hd95(v):
    from medfm.evaluation.segmentation import hd95

    return hd95(MASK_A, MASK_B, percentile=v)


def _surface_dice(v):
    from medfm.evaluation.segmentation import surface_dice

    return surface_dice(MASK_A, MASK_B, tolerance=v)


def _case_metrics(v):
    from medfm.evaluation.segmentation import case_metrics

    return case_metrics(MASK_A.astype(int), MASK_B.astype(int), ["bg", "fg"], tolerance=v)


Z = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))


def _nt_xent(v):
    from medfm.objectives.contrastive import nt_xent_loss

    return nt_xent_loss(Z, Z.flip(0), v)


def _moco(v):
    from medfm.objectives.moco import moco_infonce_loss

    return moco_infonce_loss(Z, Z.flip(0), Z, v)


def _swav(v):
    from medfm.objectives.swav import swav_loss

    return swav_loss([Z, Z.flip(0)], temperature=v)


def _matching(v):
    from medfm.objectives.graph_matching import matching_loss
    from medfm.objectives.solvers import FactorizedQAP

    nbr = torch.tensor([[(i + 1) % 4] for i in range(4)])[None]
    return matching_loss(FactorizedQAP(torch.eye(4)[None], nbr, nbr, torch.zeros(1, 4, 1, 4, 1)), "blackbox", v)


# (site, call, bad value, message); the comment says what the old check did with that value
SITES = [
    # encoders: base, KAN bases, neighbourhood attention (EncoderArgumentError; create_encoder names the encoder)
    ("encoder.in_chans", lambda v: _encoder(in_chans=v), True,
     "resnet_test: in_chans must be an integer >= 1, got True (bool)"),  # a 1-channel encoder
    ("encoder.img_size", lambda v: _encoder(img_size=v), 28.0,
     "resnet_test: img_size must be an integer >= 8, got 28.0"),  # accepted
    ("encoder.img_size", lambda v: _encoder(img_size=v), NAN,
     "resnet_test: img_size must be an integer >= 8, got nan"),  # "cannot convert float NaN to integer"
    ("ChebyshevBasis.degree", _cheb, True, "Chebyshev degree must be an integer >= 1, got True (bool)"),  # degree 1
    ("GaussianRBFBasis.num_grids", _rbf, 8.0, "RBF num_grids must be an integer >= 2, got 8.0"),  # accepted
    ("NeighborhoodAttention2D.kernel_size", lambda v: _na(kernel_size=v), 3.0,
     "kernel_size must be an odd integer >= 1, got 3.0"),  # accepted
    ("NeighborhoodAttention2D.kernel_size", lambda v: _na(kernel_size=v), "3",
     "kernel_size must be an odd integer >= 1, got '3' (str)"),  # TypeError: '<' not supported
    ("NeighborhoodAttention2D.dilation", lambda v: _na(dilation=v), NAN,
     "dilation must be an integer >= 1 or None (largest feasible), got nan"),  # accepted
    # adapters
    ("text_seg head.layers", _head, True, "layers must be an integer >= 1, got True (bool)"),
    ("SegmentationModel.num_classes", _seg_model, 2.0,
     "num_classes must be an integer >= 2 (background + targets), got 2.0"),  # TypeError from torch
    ("check_overlap", _overlap, NAN, "overlap must be a finite number in [0, 1), got nan"),
    ("inference.crop_margin", _crop_margin, 2.5, "inference.crop_margin must be an integer >= 0 (voxels), got 2.5"),
    ("LoraSettings.rank", lambda v: _lora(rank=v), True, "lora.rank must be an integer >= 1, got True (bool)"),  # rank 1
    ("LoraSettings.rank", lambda v: _lora(rank=v), 8.0, "lora.rank must be an integer >= 1, got 8.0"),  # accepted
    ("LoraSettings.alpha", lambda v: _lora(alpha=v), NAN, "lora.alpha must be a finite number > 0, got nan"),  # accepted
    ("LoraSettings.alpha", lambda v: _lora(alpha=v), "16",
     "lora.alpha must be a finite number > 0, got '16' (str)"),  # TypeError: '<=' not supported
    ("LoraSettings.dropout", lambda v: _lora(dropout=v), False,
     "lora.dropout must be a finite number in [0, 1), got False (bool)"),  # accepted
    ("LoraSettings.target_modules", lambda v: _lora(target_modules=v), "(",
     "lora.target_modules is not a valid regex: missing ), unterminated subpattern at position 0 (in '(')"),  # re.error in apply_lora
    ("LoraSettings.target_modules", lambda v: _lora(target_modules=v), "",
     "lora.target_modules must be a non-empty regex string over encoder module names (or omitted for "
     "the encoder's default), got ''"),  # "" silently meant the default
    # training recipes
    ("TrainConfig.epochs", lambda v: _train(epochs=v), 2.5, "train.epochs must be an integer >= 1, got 2.5"),  # accepted
    ("TrainConfig.batch_size", lambda v: _train(batch_size=v), True,
     "train.batch_size must be an integer >= 1, got True (bool)"),  # accepted
    ("TrainConfig.lr", lambda v: _train(lr=v), INF, "train.lr must be a finite number > 0, got inf"),  # accepted
    ("TrainConfig.warmup_epochs", lambda v: _train(warmup_epochs=v), NAN,
     "train.warmup_epochs must be a finite number >= 0, got nan"),  # accepted
    ("TrainConfig.weight_decay", lambda v: _train(weight_decay=v), NAN,
     "train.weight_decay must be a finite number >= 0, got nan"),  # accepted: NaN weights after one step
    ("TrainConfig.min_lr_ratio", lambda v: _train(min_lr_ratio=v), 2.0,
     "train.min_lr_ratio must be in [0, 1], got 2.0"),  # accepted: the cosine decay rose above lr
    ("TrainConfig.seed", lambda v: _train(seed=v), 1.5, "train.seed must be an integer >= 0, got 1.5"),  # accepted
    ("TrainConfig.grad_clip", lambda v: _train(grad_clip=v), 0,
     "train.grad_clip must be > 0 (null: no clipping), got 0.0"),  # accepted: every gradient scaled to 0
    ("TrainConfig.num_threads", lambda v: _train(num_threads=v), 0,
     "train.num_threads must be an integer >= 1 (null: torch's default), got 0"),  # accepted
    ("TrainConfig.checkpoint_every", lambda v: _train(checkpoint_every=v), 2.5,
     "train.checkpoint_every must be an integer >= 0 (0: epoch ends only), got 2.5"),  # accepted
    ("TrainConfig.log_every", lambda v: _train(log_every=v), True,
     "train.log_every must be an integer >= 1, got True (bool)"),  # accepted
    ("TextTaskConfig.loss_weight", lambda v: _text_task(loss_weight=v), True,
     "loss_weight is True (bool); loss weights must be positive and finite"),  # accepted
    ("check_target_weights", lambda v: _target_weights([v, 1.0]), True,
     "loss weights must be positive and finite numbers, got True (bool) in [True, 1.0]"),  # accepted as 1.0
    ("SegEvalConfig.sw_batch_size", lambda v: _seg_eval(sw_batch_size=v), 2.5,
     "eval.sw_batch_size must be an integer >= 1, got 2.5"),  # accepted
    ("SegEvalConfig.overlays", lambda v: _seg_eval(overlays=v), True,
     "eval.overlays must be an integer >= 0 (0: none), got True (bool)"),  # accepted
    ("SegEvalConfig.tolerance", lambda v: _seg_eval(tolerance=v), INF,
     "eval.tolerance must be a finite number >= 0 (spacing units), got inf"),  # accepted, failed after training
    ("SegEvalConfig.roi_size", lambda v: _seg_eval(roi_size=v), [32.5, 32],
     "eval.roi_size must be a list of integer sides >= 1, got [32.5, 32]"),  # accepted
    ("SegDataConfig.scale", lambda v: _seg_data(scale=v), True, "data.scale must be in (0, 4], got True (bool)"),
    ("SegDataConfig.patch", lambda v: _seg_data(patch=v), [16.0, 16],
     "data.patch must be a list of integers >= 8, got [16.0, 16]"),  # accepted
    ("SegDataConfig.foreground_p", lambda v: _seg_data(foreground_p=v), True,
     "data.foreground_p must be a finite number in [0, 1], got True (bool)"),  # accepted
    ("SegDataConfig.repeats", lambda v: _seg_data(repeats=v), 2.5, "data.repeats must be an integer >= 1, got 2.5"),
    ("SegDataConfig.context_slices", lambda v: _seg_data(context_slices=v), 1.5,
     "data.context_slices must be an integer >= 0 (0 = 3D), got 1.5"),  # named as a 2.5D/data set mismatch
    ("SegDataConfig.missing_sequence_p", lambda v: _seg_data(missing_sequence_p=v), True,
     "data.missing_sequence_p must be a finite number in [0, 1], got True (bool)"),  # accepted
    ("SegDataConfig.max_train", lambda v: _seg_data(max_train=v), 2.5,
     "data.max_train must be an integer >= 1 (or left out for all cases), got 2.5"),  # accepted
    # data
    ("ViewConfig.hflip_p", lambda v: _views(hflip_p=v), True,
     "views.hflip_p must be a finite number in [0, 1] (a probability), got True (bool)"),  # accepted
    ("ViewConfig.rotate_deg", lambda v: _views(rotate_deg=v), "10",
     "views.rotate_deg must be a finite number >= 0, got '10' (str)"),  # TypeError: '<=' not supported
    ("ViewConfig.scale", lambda v: _views(scale=v), (True, 1.0),
     "views.scale must satisfy 0 < low <= high <= 1, got (True, 1.0)"),  # accepted
    ("ViewConfig.ratio", lambda v: _views(ratio=v), (0.75, INF),
     "views.ratio must be finite, positive and ordered, got (0.75, inf)"),  # accepted
    ("LGGFusionSet.img_size", _lgg, 64.0, "img_size must be an integer >= 1 (pixels), got 64.0"),
    ("brain_bbox.margin", _bbox, 2.5, "margin must be an integer >= 0, got 2.5"),  # float slices
    ("brain_bbox.margin", _bbox, NAN, "margin must be an integer >= 0, got nan"),  # the whole volume
    # text
    ("HFTextEncoder.max_length", _text_encoder, NAN,
     "max_length must be an integer >= 2, got nan"),  # ValueError "cannot convert float NaN to integer"
    ("HFTextEncoder.max_length", _text_encoder, 128.0, "max_length must be an integer >= 2, got 128.0"),  # accepted
    # evaluation
    ("bootstrap_ci.n_boot", lambda v: _boot(n_boot=v), True, "n_boot must be an integer >= 1, got True (bool)"),
    ("bootstrap_ci.alpha", lambda v: _boot(alpha=v), "0.05",
     "alpha must be a finite number in (0, 1), got '0.05' (str)"),  # TypeError: '<' not supported
    ("bootstrap_mean_ci.n_boot", lambda v: _boot_mean(n_boot=v), 10.0, "n_boot must be an integer >= 1, got 10.0"),
    ("expected_calibration_error.n_bins", _ece, 15.0, "n_bins must be an integer >= 1, got 15.0"),  # accepted
    ("hd95.percentile", _hd95, True, "percentile must be a finite number in [0, 100], got True (bool)"),  # accepted
    ("surface_dice.tolerance", _surface_dice, True, "tolerance must be a finite number >= 0, got True (bool)"),
    ("case_metrics.tolerance", _case_metrics, "1", "tolerance must be a finite number >= 0, got '1' (str)"),
    ("CorruptionSpec.severities", lambda v: _corruptions(severities=v), (2.0,),
     "corruptions.severities must be integers in 1..5, got [2.0]"),  # accepted
    ("CorruptionSpec.workers", lambda v: _corruptions(workers=v), True,
     "corruptions.workers must be an integer >= 0 (0 or 1: in this process), got True (bool)"),  # accepted
    ("ProtocolSpec.label_fractions", lambda v: _protocol(label_fractions=v), (True,),
     "protocol.label_fractions must be in (0, 1], got [True]"),  # accepted
    ("ProtocolSpec.knn_k", lambda v: _protocol(knn_k=v), 2.5, "protocol.knn_k must be an integer >= 1, got 2.5"),
    ("ProtocolSpec.knn_temperature", lambda v: _protocol(knn_temperature=v), INF,
     "protocol.knn_temperature must be a finite number > 0, got inf"),  # accepted
    # the objectives' loss functions (the objectives check the same arguments when built)
    ("nt_xent_loss.temperature", _nt_xent, True, "nt_xent_loss: temperature must be a finite number > 0, got True (bool)"),
    ("moco_infonce_loss.temperature", _moco, True,
     "moco_infonce_loss: temperature must be a finite number > 0, got True (bool)"),  # accepted
    ("swav_loss.temperature", _swav, "0.1", "swav_loss: temperature must be a finite number > 0, got '0.1' (str)"),
    ("matching_loss.blackbox_lambda", _matching, INF,
     "matching_loss: blackbox_lambda must be a finite number > 0, got inf"),  # accepted: a zero loss
]


@pytest.mark.parametrize("site, call, value, message", SITES,
                         ids=[f"{site}={value!r}" for site, _, value, _ in SITES])
def test_each_site_refuses_with_the_shared_rule(site, call, value, message):
    assert_refuses(call, value, message)


def test_error_classes_are_kept():
    from medfm.encoders import EncoderArgumentError
    from medfm.text.encoders import TextEncoderError

    with pytest.raises(EncoderArgumentError):
        _na(kernel_size=4)
    with pytest.raises(EncoderArgumentError):
        _cheb(0)
    with pytest.raises(TextEncoderError):
        _text_encoder(True)


def test_valid_values_are_still_accepted():
    """Defaults, bounds, ints for float arguments, lists for ranges; numpy scalars now too."""
    from medfm.adapters.segmentation import check_overlap

    assert _lora(rank=np.int64(4), alpha=16, dropout=0).alpha == 16  # alpha may be an int or a float
    assert _lora(alpha=0.5).alpha == 0.5
    cfg = _train(lr=1, warmup_epochs=0.5, checkpoint_every=0)
    assert (cfg.lr, cfg.warmup_epochs, cfg.epochs) == (1, 0.5, 10)
    assert _seg_eval(tolerance=0, overlays=0, roi_size=[32, 32]).roi_size == [32, 32]
    assert _seg_data(patch=[128, 128], scale=0.5, foreground_p=1, max_train=1).patch == [128, 128]
    assert _views(scale=[0.35, 1], contrast=0, hflip_p=1, blur_sigma=(0.5, 0.5)).scale == [0.35, 1]
    assert _text_task(loss_weight=0.25).loss_weight == 0.25
    out = check_overlap(np.float32(0.5))
    assert type(out) is float and out == 0.5
    assert _head(np.int64(2))["layers"] == 2
    assert _na(kernel_size=np.int64(3), dilation=None).kernel_size == 3
    assert _bbox(np.int64(1)) == (slice(0, 4),) * 3
    assert _corruptions(resolution="native").resolution == "native"
    assert _corruptions(resolution=np.int64(64), severities=(1, 5), workers=0).severities == (1, 5)
    assert _protocol(label_fractions=(0.01, 1), knn_k=1, knn_temperature=1).knn_k == 1
    assert _boot_mean(n_boot=np.int64(10), alpha=0.5)[0] <= 3.0
    assert _hd95(0) >= 0 and _hd95(100) >= 0 and _surface_dice(0) >= 0
    assert float(_nt_xent(1)) > 0 and float(_moco(np.float32(0.5))) > 0
