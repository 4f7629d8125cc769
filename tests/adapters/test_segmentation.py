"""U-Net decoder over every encoder family: shapes (2D and 3D), training modes, save/load."""
import pytest
import torch

import medfm
from medfm.adapters.lora import LoraSettings, apply_lora
from medfm.adapters.segmentation import SEG_HEAD_MODULES, SegmentationModel, dice_ce_loss
from medfm.hub import from_pretrained, save_pretrained
from medfm.registry import ADAPTERS, ENCODERS
from tests.conftest import fit_losses




ENC_2D = [n for n in medfm.list_encoders(test=True) if ENCODERS.tags(n).get("dims", 2) == 2]
ENC_3D = [n for n in medfm.list_encoders(test=True) if ENCODERS.tags(n).get("dims", 2) == 3]


@pytest.mark.parametrize("name", ENC_2D)
@pytest.mark.parametrize("img_size", [28, 64])
def test_decoder_shapes_every_2d_family(name, img_size):
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder(name, in_chans=1, img_size=img_size), num_classes=3,
                              decoder={"stem_channels": 8})
    train = img_size == 28  # gradients at 28 px; shapes only (no_grad, batch 1) at 64 px to keep the tier fast
    x = torch.rand(2 if train else 1, 1, img_size, img_size)
    with torch.set_grad_enabled(train):
        logits = model(x)
        assert logits.shape == (x.shape[0], 3, img_size, img_size)
        # the pyramid the decoder sees is strictly coarsening, whatever the encoder returned
        levels = model.decoder.pyramid(model.encoder.forward_intermediates(x))
    sides = [lv.shape[-1] for lv in levels]
    assert all(a > b for a, b in zip(sides, sides[1:])), sides
    if train:
        model.loss(logits, torch.randint(0, 3, (2, img_size, img_size))).backward()
        assert all(p.grad is not None for p in model.decoder.parameters())


def test_duplicate_and_single_resolution_maps_are_handled():
    res = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2)
    assert res.decoder.pyramid.groups[0] == [0, 1]  # stem and layer1 both 28x28 -> concatenated
    vit = SegmentationModel(medfm.create_encoder("vit_test", in_chans=1, img_size=28), 2)
    assert vit.decoder.pyramid.single_scale
    sides = [m.shape[-1] for m in vit.decoder.pyramid(vit.encoder.forward_intermediates(torch.rand(1, 1, 28, 28)))]
    assert sides == [28, 14, 7, 4]  # x4, x2, x1, x1/2 of the 7x7 patch grid


def test_cnn_accepts_other_sizes():
    model = SegmentationModel(medfm.create_encoder("convnext_test", in_chans=3, img_size=28), 2).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 30, 37)).shape == (1, 2, 30, 37)


@pytest.mark.parametrize("name", ENC_3D)
def test_3d_decoder_shapes(name):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=1, img_size=16)
    assert enc.spatial_dims == 3 and enc(torch.rand(2, 1, 16, 16, 16)).shape == (2, enc.num_features)
    model = SegmentationModel(enc, num_classes=3, decoder={"stem_channels": 4})
    x = torch.rand(2, 1, 16, 20, 12)
    logits = model(x)
    assert logits.shape == (2, 3, 16, 20, 12)
    model.loss(logits, torch.randint(0, 3, (2, 16, 20, 12))).backward()
    with pytest.raises(Exception, match=r"\(B, C, D, H, W\)"):
        model(torch.rand(2, 1, 16, 16))


def test_lora_trains_only_adapters_decoder_and_head():
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm_names = model.encoder.norm_module_names()
    peft_model = apply_lora(model, LoraSettings(rank=4, alpha=8), head_modules=SEG_HEAD_MODULES)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    assert any(".decoder." in n for n in trainable) and any(".task_head." in n for n in trainable)
    assert all("lora_" in n or "modules_to_save" in n for n in trainable), trainable
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.rand(2, 1, 28, 28), torch.randint(0, 2, (2, 28, 28))
    model.loss(peft_model(x), y).backward()
    opt.step()
    base_state = peft_model.base_model.model.state_dict()
    for key, val in before.items():
        if key.startswith("encoder.") and not any(key.startswith(f"encoder.{m}.") for m in norm_names):
            cand = [k for k in base_state if k.replace(".base_layer", "") == key]
            assert cand and torch.equal(base_state[cand[0]], val), key


def test_frozen_encoder_gets_no_gradient():
    model = SegmentationModel(medfm.create_encoder("vit_test", in_chans=3, img_size=28), num_classes=2)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    model.loss(model(torch.rand(2, 3, 28, 28)), torch.randint(0, 2, (2, 28, 28))).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.task_head.parameters())


def test_loss_decreases_on_a_toy_task():
    torch.manual_seed(0)
    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=16), num_classes=2,
                              decoder={"stem_channels": 8})
    x = torch.zeros(4, 1, 16, 16)
    y = torch.zeros(4, 16, 16, dtype=torch.long)
    for i in range(4):
        x[i, 0, 2 + i:9 + i, 4:11] = 1.0
        y[i, 2 + i:9 + i, 4:11] = 1
    losses = fit_losses(lambda _: model.loss(model(x), y), model.parameters(), steps=20, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ADAPTERS.build("segmentation", encoder=medfm.create_encoder("resnet3d_test", in_chans=1, img_size=16),
                           num_classes=3, label_names=["bg", "a", "b"], inference={"intensity": "percentile"}).eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = model(x)
    save_pretrained(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(again(x), ref)
    assert again.label_names == ["bg", "a", "b"] and again.inference["intensity"] == "percentile"
    assert again.inference["roi_size"] == [16, 16, 16]


@pytest.mark.parametrize("dims", [2, 3])
def test_channel_zscore_inference_removes_a_colour_cast(dims):
    """With ``inference.normalize: channel_zscore`` a per-channel gain and offset of the whole
    image (a colour cast) leaves the prediction unchanged; without it, it does not."""
    from medfm.pipelines.segmentation import predict_probs

    torch.manual_seed(0)
    name, size = ("resnet_test", (40, 36)) if dims == 2 else ("resnet3d_test", (20, 18, 16))
    enc = medfm.create_encoder(name, in_chans=3 if dims == 2 else 2, img_size=16)
    plain = SegmentationModel(enc, 2, inference={"roi_size": 16}).eval()
    normed = SegmentationModel(enc, 2, inference={"roi_size": 16, "normalize": "channel_zscore"}).eval()
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(enc.in_chans, *size)
    gain = torch.linspace(0.5, 1.5, enc.in_chans).view(-1, *[1] * dims)
    cast = x * gain + 0.1
    with torch.no_grad():
        assert torch.allclose(predict_probs(normed, x, overlap=0.25), predict_probs(normed, cast, overlap=0.25), atol=1e-5)
        assert not torch.allclose(predict_probs(plain, x, overlap=0.25), predict_probs(plain, cast, overlap=0.25), atol=1e-3)


def test_bad_arguments():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationModel(enc, 1)
    with pytest.raises(ValueError, match="did you mean 'batch'"):
        SegmentationModel(enc, 2, decoder={"norm": "btach"})
    with pytest.raises(ValueError, match="unknown decoder option"):
        SegmentationModel(enc, 2, decoder={"channels": [8]})
    with pytest.raises(ValueError, match="unknown inference option"):
        SegmentationModel(enc, 2, inference={"roi": 28})
    with pytest.raises(ValueError, match="in_chans=5"):
        SegmentationModel(enc, 2, inference={"context_slices": 2})
    with pytest.raises(ValueError, match="inference.normalize must be one of"):
        SegmentationModel(enc, 2, inference={"normalize": "zscore"})
    enc5 = medfm.create_encoder("resnet_test", in_chans=5, img_size=28)
    with pytest.raises(ValueError, match="not supported for 2.5D"):
        SegmentationModel(enc5, 2, inference={"context_slices": 2, "normalize": "channel_zscore"})
    logits = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        dice_ce_loss(logits, torch.full((1, 8, 8), 2), 2)
    with pytest.raises(ValueError, match="does not fit"):
        dice_ce_loss(logits, torch.zeros(1, 8, 9, dtype=torch.long), 2)


def test_dice_ce_loss_equals_monais_dice_ce_loss():
    """dice_ce_loss = MONAI DiceLoss + a deterministic cross-entropy: the value of MONAI's DiceCELoss."""
    from monai.losses import DiceCELoss

    from medfm.adapters.segmentation import dice_ce_loss

    g = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 8, 8), (2, 2, 4, 5, 6)):
        logits = torch.randn(*shape, generator=g)
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        ref = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True,
                         smooth_nr=1e-5, smooth_dr=1e-5)(logits, target[:, None])
        torch.testing.assert_close(dice_ce_loss(logits, target, shape[1]), ref, rtol=0, atol=1e-6)


def test_check_target_reads_the_label_range_back_once(readbacks):
    """The per-step label check of dice_ce_loss costs one device sync (it read the minimum, then the maximum)."""
    from medfm.adapters.segmentation import check_target

    target = check_target(torch.zeros(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)), 3)
    assert target.shape == (2, 1, 8, 8) and len(readbacks) == 1, readbacks
