"""The encoder contract, checked over the whole registry (every family's *_test variant)."""
import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora
from medfm.encoders import EncoderInputError
from medfm.hub import from_pretrained, save_pretrained
from medfm.registry import ENCODERS, UnknownNameError

TEST_ENCODERS = [n for n in medfm.list_encoders(test=True) if ENCODERS.tags(n).get("dims", 2) == 2]


def test_every_family_has_a_test_variant():
    families = {ENCODERS.tags(n)["family"] for n in medfm.list_encoders()}
    tested = {ENCODERS.tags(n)["family"] for n in TEST_ENCODERS}
    assert families - {"cnn3d"} <= tested


@pytest.mark.parametrize("name", TEST_ENCODERS)
@pytest.mark.parametrize("in_chans,img_size", [(1, 28), (3, 64)])
def test_shapes_and_backward(name, in_chans, img_size):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=in_chans, img_size=img_size)
    x = torch.rand(2, in_chans, img_size, img_size)
    out = enc(x)
    assert out.shape == (2, enc.num_features)
    feats = enc.forward_features(x)
    assert feats.ndim in (3, 4) and feats.shape[0] == 2
    maps = enc.forward_intermediates(x)
    assert len(maps) >= 2
    for m in maps:
        assert m.ndim == 4 and m.shape[0] == 2 and min(m.shape[-2:]) >= 1
    assert enc.feature_channels == [m.shape[1] for m in maps]
    out.sum().backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert enc.config == {"name": name, "in_chans": in_chans, "img_size": img_size}
    enc.eval()
    with torch.no_grad():  # the public pooling graph matching uses: forward == forward_head(forward_features)
        assert torch.equal(enc.forward_head(enc.forward_features(x)), enc(x))


@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_save_load_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(medfm.create_encoder(name, in_chans=1, img_size=28), num_classes=3,
                            label_names=["a", "b", "c"]).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
    save_pretrained(model, tmp_path / "ckpt")
    again = from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(again(x), ref)
    assert again.label_names == ["a", "b", "c"]


@pytest.mark.parametrize("name", TEST_ENCODERS)
def test_lora_trains_only_adapters_and_head(name):
    torch.manual_seed(0)
    model = ImageClassifier(medfm.create_encoder(name, in_chans=1, img_size=28), num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm_names = model.encoder.norm_module_names()
    peft_model = apply_lora(model, LoraSettings(rank=4, alpha=8))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    for n in trainable:
        assert "lora_" in n or "modules_to_save" in n, n
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])
    loss = torch.nn.functional.cross_entropy(peft_model(x), y)
    loss.backward()
    opt.step()
    # the frozen base weights did not move (modules_to_save keeps originals untouched too)
    base_state = peft_model.base_model.model.state_dict()
    for key, val in before.items():
        if key.startswith("encoder.") and not any(key.startswith(f"encoder.{m}.") for m in norm_names):
            cand = [k for k in base_state if k.replace(".base_layer", "") == key]
            assert cand, key
            assert torch.equal(base_state[cand[0]], val), key


def test_bad_inputs_raise_clear_errors():
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    with pytest.raises(EncoderInputError, match=r"^resnet_test takes .* with C = 1 .*; got 3 input channels"):
        enc(torch.rand(2, 3, 28, 28))
    with pytest.raises(EncoderInputError, match=r"\(B, C, H, W\)"):
        enc(torch.rand(1, 28, 28))
    bad = torch.rand(2, 1, 28, 28)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(EncoderInputError, match="NaN"):
        enc(bad)
    with pytest.raises(EncoderInputError, match="float"):
        enc(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    vit = medfm.create_encoder("vit_test", in_chans=1, img_size=28)
    with pytest.raises(EncoderInputError, match="built for 28x28"):
        vit(torch.rand(2, 1, 32, 32))
    with pytest.raises(UnknownNameError, match="did you mean"):
        medfm.create_encoder("resnet_tset")


def test_small_image_stems_do_not_collapse():
    # timm's ImageNet stem shrinks 28 px to 1x1 at the last stage; ours keeps >= 4x4
    for name in ("resnet18", "convnext_atto"):
        maps = medfm.create_encoder(name, in_chans=1, img_size=28).forward_intermediates(torch.rand(1, 1, 28, 28))
        assert min(maps[-1].shape[-2:]) >= 3, name
    vit = medfm.create_encoder("vit_tiny", in_chans=1, img_size=28)
    assert vit.patch_size == 4 and vit.forward_features(torch.rand(1, 1, 28, 28)).shape[1] == 1 + 49


@pytest.mark.parametrize("name,kwargs,match", [
    ("resnet_test", {"num_classes": 2}, "num_classes cannot be set on a medfm encoder: encoders are headless"),
    ("resnet_test", {"features_only": True}, "features_only cannot be set"),
    ("resnet_test", {"foo": 1}, "encoder 'resnet_test' does not take that argument: .*'foo'"),
])
def test_arguments_medfm_sets_or_timm_rejects_are_clear_errors(name, kwargs, match):
    """timm used to answer num_classes with 'got multiple values for keyword argument' from its
    factory and features_only with an AttributeError on a missing stem."""
    from medfm.registry import UnknownArgumentError

    with pytest.raises(UnknownArgumentError, match=match) as info:
        medfm.create_encoder(name, in_chans=1, img_size=28, **kwargs)
    assert isinstance(info.value, ValueError)  # what the CLI reports as one line


@pytest.mark.parametrize("name", ["medvit_kan_test", "vmamba_test", "groupmamba_test", "kan_resnet_test", "resnet3d_test"])
def test_timm_weights_on_an_encoder_without_them_is_one_clear_error(name):
    """MedViT-KAN and the Mamba encoders used to answer pretrained='timm' with "unknown ... option:
    ... unexpected keyword argument 'timm_pretrained'"; every family now gets the same message,
    before anything is built."""
    with pytest.raises(ValueError, match=f"encoder '{name}' has no timm pretrained weights .*resnet18.*vit_tiny"):
        medfm.create_encoder(name, in_chans=1, img_size=32, pretrained="timm")
