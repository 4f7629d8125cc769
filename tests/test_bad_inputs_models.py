"""Bad inputs to the public model APIs get a one-line error naming the problem, raised by a
medfm check, never a torch/timm traceback or a silent result (found by the bad-input audit:
encoders, objectives, ImageClassifier, LoRA, VQA and the missing-modality fusers)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import apply_lora
from medfm.adapters.vqa import VQAModel
from medfm.encoders import EncoderInputError
from medfm.objectives import moco_infonce_loss
from medfm.objectives.swav import sinkhorn_knopp
from medfm.registry import OBJECTIVES
from tests.conftest import FUSION_CLINICAL, FUSION_MODS, tiny_fuser

S = 28


def _enc(name="resnet_test", **kw):
    torch.manual_seed(0)
    return medfm.create_encoder(name, in_chans=1, img_size=kw.pop("img_size", S), **kw)


def _gen():
    return torch.Generator().manual_seed(0)


# -- encoders ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args, match", [
    # timm takes these and failed at the first training step ("bernoulli_ expects p to be in [0, 1]")
    ("resnet_test", {"drop_path_rate": 5}, r"^resnet_test: drop_path_rate must be in \[0, 1\), got 5\.0$"),
    ("vit_test", {"drop_rate": -0.1}, r"^vit_test: drop_rate must be in \[0, 1\), got -0\.1$"),
    # torch's "Trying to create tensor with negative dimension" / timm's assert, now one line naming the args
    ("vit_test", {"embed_dim": -4}, r"^timm cannot build 'test_vit' with \{'embed_dim': -4\}: .*negative dimension"),
    ("vit_test", {"num_heads": 5}, r"^timm cannot build 'test_vit' with \{'num_heads': 5\}: dim should be divisible"),
])
def test_timm_encoder_args_timm_cannot_use_are_one_line_at_build(name, args, match):
    with pytest.raises(ValueError, match=match):
        _enc(name, **args)


@pytest.mark.parametrize("name", ["resnet_test", "vit_test"])
def test_encoder_rejects_an_empty_batch(name):
    # was: an empty (0, D) result, and a reshape error inside timm for ViTs (the check is in
    # Encoder.check_input, shared by the 3D encoders, whose MONAI import alone takes seconds)
    enc = _enc(name).eval()
    with pytest.raises(EncoderInputError, match=r"empty batch \(B=0"):
        enc(torch.rand(0, 1, S, S))
    with pytest.raises(EncoderInputError, match=r"empty batch \(B=0"):
        enc.forward_intermediates(torch.rand(0, 1, S, S))


# -- objectives ---------------------------------------------------------------------------------

OBJECTIVE_ARGS = {
    "simclr": dict(proj_dim=8, hidden_dim=16),
    "moco": dict(proj_dim=8, hidden_dim=16, queue_size=8),
    "swav": dict(proj_dim=8, hidden_dim=16, n_prototypes=8, n_local_views=1),
    "graph_matching": dict(proj_dim=8, hidden_dim=16, graph_size=4, k=2),
    # text_dim given: the (unloadable) text model is never built before the image check
    "clip": dict(text_encoder={"name": "hf", "model_name_or_path": "/nonexistent"}, text_dim=8, embed_dim=8,
                 proj_hidden_dim=16, text_cache=False),
}


def _objective(name):
    return OBJECTIVES.build(name, encoder=_enc(), **OBJECTIVE_ARGS[name]).train()


def _batch(images):
    n = images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else 1
    return {"image": images, "text": ["a chest x ray"] * n}


@pytest.mark.parametrize("name", sorted(OBJECTIVE_ARGS))
def test_objective_rejects_nan_that_the_random_crop_leaves_out(name):
    # was: no error (the views cropped the NaN corner away, so the encoder never saw it)
    x = torch.rand(4, 1, S, S)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(EncoderInputError, match="NaN"):
        _objective(name)(_batch(x), _gen())


@pytest.mark.parametrize("name", ["simclr", "moco"])
def test_objective_rejects_an_empty_batch(name):
    # was: "Expected non-zero, positive output size" from F.affine_grid
    with pytest.raises(EncoderInputError, match=r"empty batch \(B=0"):
        _objective(name)(_batch(torch.rand(0, 1, S, S)), _gen())


@pytest.mark.parametrize("name", ["swav", "graph_matching", "clip"])
def test_objective_names_a_missing_batch_axis_not_a_small_batch(name):
    # was: "needs a batch of at least 2/3 images, got 1" for a (C, H, W) tensor
    with pytest.raises(EncoderInputError,
                       match=r"^resnet_test takes float \(B, C, H, W\) images .*; got shape \(1, 28, 28\)"):
        _objective(name)(_batch(torch.rand(1, S, S)), _gen())


@pytest.mark.parametrize("name", ["simclr", "moco"])
def test_objective_names_a_missing_image_key_and_a_non_tensor(name):
    model = _objective(name)
    with pytest.raises(ValueError, match=r"batch dict with 'image'.*got \['images'\]"):  # was: KeyError: 'image'
        model({"images": torch.rand(4, 1, S, S)}, _gen())
    with pytest.raises(EncoderInputError, match="got a list of 4 items, not a torch.Tensor"):  # was: AttributeError
        model({"image": [torch.rand(1, S, S)] * 4}, _gen())


def test_simclr_single_image_error_names_the_objective():
    with pytest.raises(ValueError, match="simclr needs a batch of at least 2 images.*got 1"):
        _objective("simclr")(_batch(torch.rand(1, 1, S, S)), _gen())


def test_empty_loss_inputs_are_refused():
    with pytest.raises(ValueError, match="B >= 1"):  # was: a NaN loss
        moco_infonce_loss(torch.zeros(0, 8), torch.zeros(0, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"B, K >= 1.*\(0, 8\)"):  # was: "math domain error"
        sinkhorn_knopp(torch.zeros(0, 8))


# -- classifier and LoRA --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clf():
    return ImageClassifier(_enc(), 3).eval()


@pytest.mark.parametrize("labels,match", [
    ([0, 1, 3, 0], r"class labels must be in \[0, 3\), got \[3\]"),
    ([0, -1, 2, 0], r"class labels must be in \[0, 3\), got \[-1\]"),
    ([0.5, 1.0, 2.0, 0.0], "whole numbers"),
    ([float("nan"), 1.0, 2.0, 0.0], "whole numbers"),
    ([0, 1, 2], r"3 class labels .* for 4 samples"),
])
def test_classifier_loss_checks_class_labels(clf, labels, match):
    # was: IndexError "Target 3 is out of bounds" from torch, or a silent truncation of 0.5 to 0
    logits = clf(torch.rand(4, 1, S, S))
    with pytest.raises(ValueError, match=match):
        clf.loss(logits, torch.tensor(labels))


def test_classifier_checks_logits_shape(clf):
    logits = clf(torch.rand(4, 1, S, S))
    with pytest.raises(ValueError, match=r"logits must be \(B, 3\).*got \(4, 2\)"):  # was: a loss over 2 classes
        clf.loss(logits[:, :2], torch.tensor([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"logits must be \(B, 3\).*got \(4,\)"):  # was: softmax over the batch
        clf.scores(logits[:, 0])


def test_multi_label_targets_must_be_in_unit_interval():
    ml = ImageClassifier(_enc(), 3, task="multi-label, binary-class").eval()
    logits = ml(torch.rand(2, 1, S, S))
    for bad in (torch.full((2, 3), 2.0), torch.full((2, 3), float("nan"))):  # was: a silent (or NaN) loss
        with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
            ml.loss(logits, bad)


def test_head_norm_single_image_in_training_names_the_batchnorm():
    model = ImageClassifier(_enc(), 3, head_norm=True).train()
    # was: torch's "Expected more than 1 value per channel when training"
    with pytest.raises(ValueError, match="head_norm .* at least 2 images"):
        model(torch.rand(1, 1, S, S))


def test_lora_refuses_a_module_without_a_medfm_encoder():
    with pytest.raises(ValueError, match="medfm model with an 'encoder'.*got Linear"):  # was: AttributeError
        apply_lora(nn.Linear(3, 3))


# -- VQA ---------------------------------------------------------------------------------------------

TEXT_DIM = 32


@pytest.fixture(scope="module")
def vqa():
    return VQAModel(_enc(), ["yes", "no", "axial"], TEXT_DIM, text_encoder={"name": "hf", "model_name_or_path": "/nonexistent"},
                    dim=16, heads=2, layers=1, dropout=0.0).eval()


def _q(b=3, width=TEXT_DIM):
    return torch.randn(b, 5, width), torch.ones(b, 5, dtype=torch.bool)


@pytest.mark.parametrize("case,match", [
    ("batch", "2 images for 3 questions"),            # was: a reshape error inside nn.MultiheadAttention
    ("width", "width 16 but the model was built for text_dim=32"),  # was: LayerNorm shape error
    ("int", "must be float"),                          # was: "mixed dtype (CPU)" from layer_norm
    ("nan", "NaN"),                                    # was: NaN logits
])
def test_vqa_question_token_checks(vqa, case, match):
    x = torch.rand(3, 1, S, S)
    q, m = _q()
    if case == "batch":
        x = x[:2]
    elif case == "width":
        q, m = _q(width=16)
    elif case == "int":
        q = q.long()
    else:
        q[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=match):
        vqa(x, q, m)


def test_vqa_loss_checks_answer_ids(vqa):
    out = vqa(torch.rand(3, 1, S, S), *_q())
    closed = torch.tensor([True, False, False])
    with pytest.raises(ValueError, match=r"answer ids must be in \[0, 3\) or -1, got \[3\]"):  # was: IndexError
        vqa.loss(out, torch.tensor([0, 3, -1]), closed)
    with pytest.raises(ValueError, match="2 answer ids .* for 3 samples"):  # was: a boolean-mask IndexError
        vqa.loss(out, torch.tensor([0, 1]), closed)
    assert torch.isfinite(vqa.loss(out, torch.tensor([0, 2, -1]), closed))


class _VolumeEncoder(nn.Module):
    """Stands in for a 3D encoder (``resnet3d_*``) without importing MONAI."""

    spatial_dims, in_chans, img_size, config = 3, 1, 16, {"name": "resnet3d_test"}


def test_vqa_refuses_a_volume_encoder_and_a_single_question_string(vqa):
    with pytest.raises(ValueError, match="VQA takes 2D images.*'resnet3d_test'.*spatial_dims=3"):
        VQAModel(_VolumeEncoder(), ["yes", "no"], TEXT_DIM, text_encoder={"name": "hf"})  # was: probe's tensor error
    with pytest.raises(ValueError, match="single string"):  # was: "1 images for 17 questions"
        vqa.answer(torch.rand(1, 1, S, S), "is there a mass ?")


# -- missing-modality fusers -----------------------------------------------------------------------------

MODS, F_CLIN = FUSION_MODS, FUSION_CLINICAL
_fuser = tiny_fuser


def _fbatch(model, b=2, size=S):
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(b, F_CLIN, generator=g) if m == "clinical" else torch.rand(b, 1, size, size, generator=g)
            for m in model.modalities}


FUSER_NAMES = ["3mat", "channelvit", "fused_unet", "late_fusion_zero_fill", "multimodn"]


@pytest.fixture(scope="module")
def fusers():
    return {n: _fuser(n) for n in FUSER_NAMES}


@pytest.mark.parametrize("name", FUSER_NAMES)
def test_fuser_rejects_integer_images(fusers, name):
    # was: uint8 cast to float 0..255 and fused without a word
    model = fusers[name]
    batch = _fbatch(model)
    batch["pre"] = (batch["pre"] * 255).to(torch.uint8)
    with pytest.raises(EncoderInputError, match="'pre' must be float images"):
        model(batch)


@pytest.mark.parametrize("name", FUSER_NAMES)
def test_fuser_rejects_batch_sizes_that_disagree(fusers, name):
    # was: B taken from the first tensor or mask; rows silently paired up wrongly (or an IndexError)
    model = fusers[name]
    batch = _fbatch(model)
    batch["pre"] = torch.rand(3, 1, S, S)
    with pytest.raises(ValueError, match="disagree on the batch size"):
        model(batch)
    batch = _fbatch(model)
    batch["present"] = {"pre": torch.tensor([True, False, True])}
    with pytest.raises(ValueError, match="disagree on the batch size"):
        model(batch)


@pytest.mark.parametrize("name", FUSER_NAMES)
def test_fuser_rejects_an_empty_batch(fusers, name):
    # was: reshape errors inside nn.MultiheadAttention, StopIteration, or empty outputs
    with pytest.raises(ValueError, match=r"empty batch \(B=0\)"):
        fusers[name](_fbatch(fusers[name], b=0))


@pytest.mark.parametrize("name", ["channelvit", "fused_unet"])
def test_fixed_size_fusers_name_the_image_size(fusers, name):
    # was: channelvit silently dropped the border (or stacked mismatched maps in fused_unet)
    with pytest.raises(EncoderInputError, match="built for 28x28 images, got 32x32"):
        fusers[name](_fbatch(fusers[name], size=32))


def test_channelvit_names_a_wrong_channel_count(fusers):
    batch = _fbatch(fusers["channelvit"])
    batch["pre"] = torch.rand(2, 3, S, S)
    with pytest.raises(EncoderInputError, match=r"single-channel images \(B, 1, S, S\), got shape \(2, 3, 28, 28\)"):
        fusers["channelvit"](batch)  # was: conv2d channel error from torch


@pytest.mark.parametrize("name", ["3mat", "multimodn"])
def test_fuser_loss_checks_labels(fusers, name):
    model = fusers[name]
    out = model(_fbatch(model))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 2\), got \[2\]"):  # was: IndexError
        model.loss(out, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="1 class labels .* for 2 samples"):  # was: torch batch_size mismatch
        model.loss(out, torch.tensor([0]))
