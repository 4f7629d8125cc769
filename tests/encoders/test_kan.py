"""KAN layers against hand-computed basis expansions, and the KAN encoder family."""
from __future__ import annotations

import math
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medfm.encoders import create_encoder, list_encoders
from medfm.encoders.base import EncoderInputError
from medfm.encoders.checks import EncoderArgumentError
from medfm.encoders.kan_resnet import KANBasicBlock
from medfm.encoders.layers.kan import ChebyshevBasis, KANConv2d, KANLinear, create_basis
from medfm.encoders.layers.neighborhood_attention import NeighborhoodAttention2D
from medfm.encoders.medvit_kan import GFPBlock, KANFeedForward

X3 = [0.5, -1.0, 2.0]


def cheb(n: int, t: float) -> float:
    """T_n(t) from the closed forms, T_1..T_3."""
    return {1: t, 2: 2 * t * t - 1, 3: 4 * t ** 3 - 3 * t}[n]


# ---------------------------------------------------------------- layers vs hand computation
def test_chebyshev_kan_linear_equals_hand_computed_expansion():
    layer = KANLinear(3, 2, basis={"name": "chebyshev", "degree": 3})
    assert layer.base is None and layer.coeff.in_features == 9
    w = torch.arange(18, dtype=torch.float32).reshape(2, 9) / 10 - 0.8
    with torch.no_grad():
        layer.coeff.weight.copy_(w)
        layer.coeff.bias.copy_(torch.tensor([0.25, -0.5]))
    got = layer(torch.tensor([X3]))
    expected = []
    for o in range(2):
        total = [0.25, -0.5][o]
        for i, xi in enumerate(X3):
            t = math.tanh(xi)
            for k in range(3):  # column i * K + k holds T_{k+1}(tanh x_i)
                total += float(w[o, i * 3 + k]) * cheb(k + 1, t)
        expected.append(total)
    torch.testing.assert_close(got, torch.tensor([expected]), atol=1e-6, rtol=1e-6)


def test_rbf_kan_linear_equals_hand_computed_fastkan():
    layer = KANLinear(3, 1, basis={"name": "rbf", "num_grids": 3, "grid_range": (-1.0, 1.0)})
    assert layer.base is not None  # FastKAN's SiLU base branch is on by default
    w = torch.tensor([[0.3, -0.2, 0.1, 0.5, 0.4, -0.6, 0.2, 0.7, -0.1]])
    wb = torch.tensor([[0.9, -0.3, 0.2]])
    with torch.no_grad():
        layer.coeff.weight.copy_(w)
        layer.coeff.bias.fill_(0.05)
        layer.base.weight.copy_(wb)
    total = 0.05
    for i, xi in enumerate(X3):
        for j, g in enumerate((-1.0, 0.0, 1.0)):  # width h = grid spacing = 1
            total += float(w[0, i * 3 + j]) * math.exp(-((xi - g) / 1.0) ** 2)
        total += float(wb[0, i]) * xi / (1 + math.exp(-xi))
    torch.testing.assert_close(layer(torch.tensor(X3)), torch.tensor([total]), atol=1e-6, rtol=1e-6)


def test_chebyshev_recurrence_matches_cosine_definition():
    x = torch.linspace(-3, 3, 41)
    got = ChebyshevBasis(degree=5)(x)  # (41, 5)
    theta = torch.acos(torch.tanh(x).clamp(-1, 1))
    ref = torch.stack([torch.cos(n * theta) for n in range(1, 6)], dim=-1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_kan_conv_1x1_equals_kan_linear_per_pixel():
    torch.manual_seed(0)
    conv = KANConv2d(4, 3, kernel_size=1)
    lin = KANLinear(4, 3)
    with torch.no_grad():
        lin.coeff.weight.copy_(conv.coeff.weight.flatten(1))
        lin.coeff.bias.copy_(conv.coeff.bias)
    x = torch.randn(2, 4, 5, 6)
    ref = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def test_kan_conv_like_copies_geometry_and_supports_groups():
    src = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2, bias=False)
    conv = KANConv2d.like(src, basis={"name": "chebyshev", "degree": 2})
    assert conv.coeff.in_channels == 16 and conv.coeff.groups == 2 and conv.coeff.bias is None
    assert conv(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    rbf = KANConv2d(3, 4, 3, padding=1, basis="rbf")
    assert rbf.base is not None and rbf(torch.randn(1, 3, 6, 6)).shape == (1, 4, 6, 6)


def test_kan_feed_forward_acts_per_pixel_channel_vector():
    """Permuting pixels permutes outputs: the KAN sees channel vectors, not reshaped rows."""
    torch.manual_seed(1)
    ffn = KANFeedForward(8, 8)
    t = torch.randn(2, 5, 5, 8)
    out = ffn(t)
    perm = torch.randperm(25)
    shuffled = t.reshape(2, 25, 8)[:, perm].reshape(2, 5, 5, 8)
    torch.testing.assert_close(ffn(shuffled).reshape(2, 25, 8), out.reshape(2, 25, 8)[:, perm])
    torch.testing.assert_close(ffn(t[:, 2, 3]), out[:, 2, 3])  # one token alone gives the same


def test_bad_kan_arguments_raise():
    # the layers' argument is ``basis``; the encoders name theirs (``kan``, tests/encoders/test_encoder_build_errors.py)
    with pytest.raises(EncoderArgumentError, match=r"^basis: unknown KAN basis 'chebychev'; did you mean "
                                                   r"'chebyshev'\?"):
        create_basis("chebychev")
    with pytest.raises(EncoderArgumentError, match=r"^basis: Chebyshev degree must be an integer >= 1, got 0$"):
        create_basis({"name": "chebyshev", "degree": 0})
    # was "bad arguments for KAN basis 'rbf': GaussianRBFBasis.__init__() got an unexpected keyword argument 'degree'"
    with pytest.raises(EncoderArgumentError, match=re.escape("basis: the 'rbf' KAN basis takes no argument 'degree' "
                                                             "(it takes: num_grids, grid_range)")):
        create_basis({"name": "rbf", "degree": 3})
    with pytest.raises(EncoderArgumentError, match=r"\(every layer builds its own basis\), got ChebyshevBasis"):
        create_basis(ChebyshevBasis(2))
    with pytest.raises(ValueError, match="3 input features"):
        KANLinear(3, 2)(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        KANConv2d(3, 2, 1)(torch.randn(1, 4, 5, 5))


# ---------------------------------------------------------------- the encoder family
KAN_TEST = list_encoders(family="kan", test=True)


def test_family_is_registered():
    assert set(list_encoders(family="kan")) >= {"medvit_kan_tiny", "medvit_kan_small", "medvit_kan_test",
                                                 "kan_resnet18", "kan_resnet_test"}
    assert set(KAN_TEST) == {"medvit_kan_test", "kan_resnet_test"}


@pytest.mark.parametrize("name", KAN_TEST)
@pytest.mark.parametrize("in_chans,img_size", [(1, 28), (3, 64), (3, 224)])
def test_test_variants_shapes(name, in_chans, img_size):
    enc = create_encoder(name, in_chans=in_chans, img_size=img_size).eval()
    x = torch.rand(1, in_chans, img_size, img_size)
    with torch.no_grad():
        emb = enc(x)
        maps = enc.forward_intermediates(x)
    assert emb.shape == (1, enc.num_features) and torch.isfinite(emb).all()
    assert all(m.ndim == 4 and m.shape[0] == 1 for m in maps)
    assert maps[-1].shape[1] == enc.num_features and min(maps[-1].shape[-2:]) >= 2


@pytest.mark.parametrize("name,channels", [("medvit_kan_tiny", [64, 128, 256, 512]),
                                           ("medvit_kan_small", [96, 192, 384, 768])])
def test_medvit_kan_stage_maps_at_28px(name, channels):
    enc = create_encoder(name, in_chans=1, img_size=28).eval()
    with torch.no_grad():
        maps = enc.forward_intermediates(torch.rand(1, 1, 28, 28))
    assert [tuple(m.shape[1:]) for m in maps] == [(c, s, s) for c, s in zip(channels, (14, 7, 4, 2))]
    attn = [m for m in enc.modules() if isinstance(m, NeighborhoodAttention2D)]
    assert len(attn) == sum(len(s) for s in enc.arch.blocks) and all(a.kernel_size == 7 for a in attn)


def test_kan_resnet18_uses_kan_convs_and_small_stem():
    enc = create_encoder("kan_resnet18", in_chans=1, img_size=28).eval()
    blocks = [m for m in enc.modules() if isinstance(m, KANBasicBlock)]
    assert len(blocks) == 8 and all(isinstance(b.conv1, KANConv2d) and isinstance(b.conv2, KANConv2d) for b in blocks)
    assert enc.model.conv1.stride == (1, 1)
    with torch.no_grad():
        assert enc(torch.rand(1, 1, 28, 28)).shape == (1, 512)
    with pytest.raises(ValueError, match="pretrained"):
        create_encoder("kan_resnet18", in_chans=1, img_size=28, pretrained="timm")


def test_medvit_gfp_blocks_use_dilated_na_and_kan():
    enc = create_encoder("medvit_kan_test", in_chans=1, img_size=224, kan="rbf")
    gfp = [m for m in enc.modules() if isinstance(m, GFPBlock)]
    assert gfp and all(b.attn.dilation is None and isinstance(b.ffn.kan1, KANLinear) for b in gfp)
    assert gfp[0].ffn.kan1.base is not None  # rbf option carried through
    with pytest.raises(ValueError, match="did you mean"):
        create_encoder("medvit_kan_test", in_chans=1, img_size=28, kan="rbff")
    with pytest.raises(ValueError, match="unknown MedViT-KAN option"):
        create_encoder("medvit_kan_test", in_chans=1, img_size=28, widths=(8, 8, 8, 8))


@pytest.mark.parametrize("name", KAN_TEST)
def test_backward_reaches_all_parameters(name):
    torch.manual_seed(0)
    enc = create_encoder(name, in_chans=1, img_size=28)
    enc(torch.rand(2, 1, 28, 28)).square().mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("name", KAN_TEST)
def test_save_load_is_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    enc = create_encoder(name, in_chans=3, img_size=28)
    enc(torch.rand(4, 3, 28, 28))  # move BatchNorm running stats off their init
    enc.eval()
    save_file(enc.state_dict(), str(tmp_path / "model.safetensors"))
    torch.manual_seed(1)
    other = create_encoder(name, in_chans=3, img_size=28).eval()
    other.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(enc(x), other(x))


def test_bad_input_is_reported():
    enc = create_encoder("medvit_kan_test", in_chans=1, img_size=28)
    with pytest.raises(EncoderInputError, match=r"^medvit_kan_test takes .* with C = 1 .*; got 3 input channels"):
        enc(torch.rand(2, 3, 28, 28))


class _Classifier(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


@pytest.mark.parametrize("name,expected", [("medvit_kan_test", {"qkv", "proj", "fc1", "fc2", "coeff"}),
                                           ("kan_resnet_test", {"coeff"})])
def test_lora_trains_only_adapters_and_head(name, expected):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    enc = create_encoder(name, in_chans=1, img_size=28)
    for m in enc.modules():  # as after pretraining: timm zero-inits each block's last BN scale,
        if isinstance(m, nn.BatchNorm2d):  # which would block every gradient into its branch
            nn.init.ones_(m.weight)
    pattern = rf"encoder\.(?:{enc.lora_target_modules})"
    model = _Classifier(enc)
    hits = [n for n, m in model.named_modules() if re.fullmatch(pattern, n)]
    assert hits and all(isinstance(model.get_submodule(n), (nn.Linear, nn.Conv2d)) for n in hits)
    assert {n.rsplit(".", 1)[-1] for n in hits} >= expected
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=pattern, modules_to_save=["head"]))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or ".head." in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in peft_model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])
    nn.functional.cross_entropy(peft_model(x), y).backward()  # lora_B starts at 0: grads reach it
    opt.step()
    after = dict(peft_model.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in frozen.items())
    assert any(not torch.equal(after[n], torch.zeros_like(after[n])) for n in trainable if "lora_B" in n)

