"""Cross-scan / cross-merge, the shared directional SSM core, and the VMamba / GroupMamba encoders."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora
from medfm.encoders import EncoderArgumentError, EncoderInputError
from medfm.encoders.layers.selective_scan import selective_scan_ref
from medfm.encoders.layers.ss2d import (
    DirectionalSelectiveScan, GroupLayerNorm, MapLinear, ModulatedGroupMamba, cross_merge, cross_scan,
)
from medfm.encoders.mamba import MambaConfig
from medfm.registry import ENCODERS

TEST_VARIANTS = ["vmamba_test", "groupmamba_test"]




# ------------------------------------------------------------------------ cross-scan / merge
def test_scan_orders_on_a_non_square_map():
    # 2 x 3 map holding its own row-major index; one sample, one channel
    x = torch.arange(6.0).view(1, 2, 3, 1)
    seq = cross_scan(x)[:, 0, :, 0]  # (L, K)
    assert seq[:, 0].tolist() == [0, 1, 2, 3, 4, 5]  # row-major
    assert seq[:, 1].tolist() == [0, 3, 1, 4, 2, 5]  # column-major
    assert seq[:, 2].tolist() == [5, 4, 3, 2, 1, 0]  # row-major reversed
    assert seq[:, 3].tolist() == [5, 2, 4, 1, 3, 0]  # column-major reversed


def test_merge_of_scan_round_trips():
    x = torch.randn(2, 5, 7, 6)
    torch.testing.assert_close(cross_merge(cross_scan(x), 5, 7), 4 * x)  # shared: every direction sums back
    x8 = torch.randn(2, 5, 7, 8)
    assert cross_scan(x8, shared=False).shape == (35, 2, 4, 2)
    torch.testing.assert_close(cross_merge(cross_scan(x8, shared=False), 5, 7, reduce="concat"), x8)
    parts = list(torch.randn(4, 2, 5, 7, 3).unbind(0))
    merged = cross_merge(cross_scan(parts), 5, 7, reduce="concat")
    torch.testing.assert_close(merged, torch.cat(parts, dim=-1))
    dirs = (1, 3)  # a subset of directions
    torch.testing.assert_close(cross_merge(cross_scan(x, dirs), 5, 7, dirs), 2 * x)


@pytest.mark.parametrize("shared", [True, False])
def test_merge_is_the_adjoint_of_scan_and_gradients_flow(shared):
    x = torch.randn(2, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    seq = cross_scan(x, shared=shared)
    y = torch.randn_like(seq)
    merged = cross_merge(y, 4, 6, reduce="sum" if shared else "concat")
    # <scan(x), y> == <x, merge(y)>
    torch.testing.assert_close((seq * y).sum(), (x * merged).sum())
    (grad,) = torch.autograd.grad((seq * y).sum(), x)
    torch.testing.assert_close(grad, merged)
    assert torch.autograd.gradcheck(lambda t: cross_scan(t, shared=shared), (x,))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 4, 6, reduce="sum" if shared else "concat"),
                                    (y.requires_grad_(),))


def test_cross_scan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="directions"):
        cross_scan(torch.randn(1, 2, 2, 4), directions=(0, 5))
    with pytest.raises(ValueError, match="cannot be split"):
        cross_scan(torch.randn(1, 2, 2, 6), shared=False)
    with pytest.raises(ValueError, match="reduce"):
        cross_merge(torch.randn(4, 1, 4, 2), 2, 2, reduce="mean")
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        cross_scan(torch.randn(2, 2, 4))


# ------------------------------------------------------------------------------ SSM core
def naive_directional_scan(core: DirectionalSelectiveScan, x: torch.Tensor) -> torch.Tensor:
    """Per direction: gather the sequence by explicit index order, project, scan with the reference."""
    batch, height, width, _ = x.shape
    idx = torch.arange(height * width).view(height, width)
    orders = {0: idx.flatten(), 1: idx.t().flatten()}
    orders[2], orders[3] = orders[0].flip(0), orders[1].flip(0)
    k, d, r, n = len(core.directions), core.d, core.dt_rank, core.d_state
    tokens = x.reshape(batch, height * width, -1)
    outs = []
    for i, direction in enumerate(core.directions):
        order = orders[direction]
        xi = tokens if core.shared else tokens[..., i * d:(i + 1) * d]
        seq = xi[:, order]  # (B, L, d)
        p = F.linear(seq, core.x_proj[i].weight)
        dt = F.linear(p[..., :r], core.dt_proj[i].weight, core.dt_proj[i].bias)
        y = selective_scan_ref(seq.transpose(1, 2), dt.transpose(1, 2), -torch.exp(core.A_log[i * d:(i + 1) * d]),
                               p[..., r:r + n].transpose(1, 2), p[..., r + n:].transpose(1, 2),
                               D=core.D[i * d:(i + 1) * d])  # (B, d, L)
        back = torch.empty_like(y)
        back[..., order] = y
        outs.append(back.transpose(1, 2).reshape(batch, height, width, d))
    return sum(outs) if core.shared else torch.cat(outs, dim=-1)


@pytest.mark.parametrize("shared,d_state", [(True, 1), (False, 1), (True, 3), (False, 2)])
def test_directional_scan_equals_naive_per_direction_scans(shared, d_state):
    torch.manual_seed(0)
    core = DirectionalSelectiveScan(4, shared=shared, d_state=d_state)
    with torch.no_grad():
        core.A_log.add_(torch.rand_like(core.A_log))
        core.D.normal_()
    x = torch.randn(2, 3, 5, 4 if shared else 16)
    torch.testing.assert_close(core(x), naive_directional_scan(core, x), atol=1e-5, rtol=1e-5)


def test_map_linear_is_a_linear_layer():
    torch.manual_seed(0)
    lin = MapLinear(6, 5)
    for shape in [(2, 3, 4, 6), (7, 6), (3, 2, 6)]:
        x = torch.randn(*shape, requires_grad=True)
        out, ref = lin(x), F.linear(x, lin.weight, lin.bias)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(out, (x, lin.weight), g), torch.autograd.grad(ref, (x, lin.weight), g)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_group_layer_norm_equals_one_layer_norm_per_group():
    norm = GroupLayerNorm(4, 3)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 5, 12)
    expected = torch.cat([F.layer_norm(x[..., 3 * g:3 * g + 3], (3,), norm.weight[g], norm.bias[g], eps=1e-6)
                          for g in range(4)], dim=-1)
    torch.testing.assert_close(norm(x), expected)


def test_group_mamba_layer_needs_channels_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        ModulatedGroupMamba(30)
    assert ModulatedGroupMamba(32)(torch.randn(1, 3, 3, 32)).shape == (1, 3, 3, 32)


# ------------------------------------------------------------------------------ encoders
@pytest.mark.parametrize("name", TEST_VARIANTS)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("img_size,sides", [(28, [28, 14, 7, 4]), (64, [32, 16, 8, 4])])
def test_encoder_shapes(name, in_chans, img_size, sides):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=in_chans, img_size=img_size)
    x = torch.rand(2, in_chans, img_size, img_size)
    assert enc.family == "mamba" and ENCODERS.tags(name) == {"family": "mamba", "test": True}
    assert enc(x).shape == (2, enc.num_features)
    feats = enc.forward_features(x)
    assert feats.shape == (2, enc.num_features, sides[-1], sides[-1])
    maps = enc.forward_intermediates(x)
    assert [tuple(m.shape[-2:]) for m in maps] == [(s, s) for s in sides]
    assert [m.shape[1] for m in maps] == list(enc.arch.dims)
    # the pooled embedding is the mean of the last map
    torch.testing.assert_close(enc(x), maps[-1].mean(dim=(-2, -1)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_encoder_at_224_and_non_square_inputs(name):
    enc = medfm.create_encoder(name, in_chans=3, img_size=224)
    maps = enc.forward_intermediates(torch.rand(1, 3, 224, 224))
    assert [m.shape[-1] for m in maps] == [56, 28, 14, 7]
    assert enc(torch.rand(2, 3, 40, 56)).shape == (2, enc.num_features)  # no fixed size


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=1, img_size=28)
    enc(torch.rand(2, 1, 28, 28)).pow(2).sum().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_save_load_safetensors_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    enc = medfm.create_encoder(name, in_chans=1, img_size=28).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        ref = enc(x)
    save_file(enc.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    again = medfm.create_encoder(name, in_chans=1, img_size=28).eval()
    again.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    with torch.no_grad():
        assert torch.equal(again(x), ref)


@pytest.mark.parametrize("name", TEST_VARIANTS)
def test_lora_wraps_ssm_projections_and_ffns_and_trains_only_adapters_and_head(name):
    torch.manual_seed(0)
    model = ImageClassifier(medfm.create_encoder(name, in_chans=1, img_size=28), num_classes=2)
    pattern = model.encoder.lora_target_modules
    hits = [n for n, m in model.encoder.named_modules() if re.fullmatch(pattern, n)]
    kinds = {re.sub(r"\.\d+$", "", n).rsplit(".", 1)[-1] for n in hits}
    expected = {"in_proj", "out_proj", "x_proj", "dt_proj", "fc1", "fc2"} | ({"proj"} if "group" in name else set())
    assert kinds == expected  # the FFNs too (about 70 % of the weights), like the ViT patterns' MLPs
    assert all(isinstance(dict(model.encoder.named_modules())[n], torch.nn.Linear) for n in hits)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert sum("lora_" in n for n in trainable) == 2 * len(hits)
    assert all("lora_" in n or "task_head" in n for n in trainable), trainable
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # the second step moves lora_A too (lora_B starts at zero)
        opt.zero_grad()
        F.cross_entropy(peft_model(torch.rand(4, 1, 28, 28)), torch.tensor([0, 1, 0, 1])).backward()
        opt.step()
    state = peft_model.base_model.model.state_dict()
    for key, val in before.items():
        if key.startswith("encoder."):
            cand = [k for k in state if k.replace(".base_layer", "") == key]
            assert cand and torch.equal(state[cand[0]], val), key
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)


def test_bf16_autocast_forward():
    enc = medfm.create_encoder("vmamba_test", in_chans=1, img_size=28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, enc.num_features) and torch.isfinite(out.float()).all()


def test_tiny_variants_build_and_cost_about_resnet18():
    from torch.utils.flop_counter import FlopCounterMode
    flops = {}
    for name in ("resnet18", "vmamba_tiny", "groupmamba_tiny"):
        enc = medfm.create_encoder(name, in_chans=1, img_size=28).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            assert enc(torch.rand(1, 1, 28, 28)).shape == (1, enc.num_features)
        flops[name] = counter.get_total_flops()
    for name in ("vmamba_tiny", "groupmamba_tiny"):
        assert 0.8 < flops[name] / flops["resnet18"] < 1.25, (name, flops)


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(EncoderArgumentError,
                       match=r"^groupmamba_test: dims must be stage widths divisible by 4 for GroupMamba, got \(16, 32, 30, 48\)$"):
        medfm.create_encoder("groupmamba_test", in_chans=1, img_size=28, dims=(16, 32, 30, 48))
    with pytest.raises(ValueError, match="unknown Mamba encoder option 'depth'; did you mean 'depths'"):
        medfm.create_encoder("vmamba_test", in_chans=1, img_size=28, depth=3)
    with pytest.raises(ValueError, match=r"unknown Mamba encoder option 'layers' \(valid: "):  # a ResNet recipe's args
        medfm.create_encoder("vmamba_test", in_chans=1, img_size=28, layers=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="mixer"):
        MambaConfig(mixer="mamba2", dims=(8, 8, 8, 8), depths=(1, 1, 1, 1))
    enc = medfm.create_encoder("vmamba_test", in_chans=1, img_size=28)
    with pytest.raises(EncoderInputError, match=r"^vmamba_test takes .* with C = 1 .*; got 3 input channels"):
        enc(torch.rand(2, 3, 28, 28))
