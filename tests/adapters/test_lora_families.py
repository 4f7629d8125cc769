"""LoRA across encoder families: targets found, ``merge_adapter`` equal to the unmerged model, merged reload bit-exact.

The 3D case (MONAI ResNet's 1x1x1 shortcut convolutions) used to fail in ``medfm merge`` with a
shape error from peft's Conv2d-1x1 shortcut (huggingface/peft#3768).
"""
from __future__ import annotations

import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, lora_config, merge_adapter, merge_lora, save_adapter
from medfm.hub import from_pretrained, save_pretrained
from medfm.registry import ENCODERS

#: one small random-weight encoder per family (2D CNN, ConvNeXt, ViT, both KAN kinds, both Mamba kinds, 3D CNN)
FAMILIES = ["resnet_test", "convnext_test", "vit_test", "medvit_kan_test", "kan_resnet_test", "vmamba_test",
            "groupmamba_test", "resnet3d_test"]


def _model(name: str) -> ImageClassifier:
    """A classifier whose weights look trained: timm zero-inits each residual branch's last BN scale
    (ConvNeXt: layer scale 1e-6), which would hide every LoRA update in those branches."""
    torch.manual_seed(0)
    dims = ENCODERS.tags(name).get("dims", 2)
    size = 16 if dims == 3 else 28
    model = ImageClassifier(medfm.create_encoder(name, in_chans=1, img_size=size), num_classes=2)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    return model


def _input(model: ImageClassifier) -> torch.Tensor:
    enc = model.encoder
    return torch.rand(2, 1, *([enc.img_size] * enc.spatial_dims), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", FAMILIES)
def test_merged_adapter_equals_the_lora_model_and_reloads_bit_exactly(tmp_path, name):
    model = _model(name)
    base = save_pretrained(model, tmp_path / "base")
    targets = lora_config(model, LoraSettings(rank=2, alpha=4)).target_modules
    assert targets and all(t.startswith("encoder.") for t in targets)
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4))
    with torch.no_grad():  # a trained adapter: lora_B away from its zero init, so the merge changes weights
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(2))
    x = _input(model)
    peft_model.eval()
    with torch.no_grad():
        ref = peft_model(x)
        plain = peft_model.get_base_model()
        with peft_model.disable_adapter():
            assert not torch.allclose(plain(x), ref, atol=1e-4)  # the adapter is not a no-op
    save_adapter(peft_model, tmp_path / "adapter", str(base))
    merged_dir = merge_adapter(tmp_path / "adapter", tmp_path / "merged")
    merged = from_pretrained(merged_dir).eval()
    again = from_pretrained(merged_dir).eval()
    with torch.no_grad():
        out = merged(x)
        assert torch.allclose(out, ref, atol=1e-5, rtol=0)
        assert torch.equal(again(x), out)
    assert not any("lora_" in k for k in merged.state_dict())


def test_merge_lora_folds_pointwise_and_non_pointwise_conv3d_layers():
    """Conv3d kernels (1, 1, 1) and (1, 1, 3) both start with (1, 1), which peft mistook for Conv2d 1x1."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 1), torch.nn.Conv3d(4, 3, (1, 1, 3), padding=(0, 0, 1)),
                              torch.nn.Conv3d(3, 2, 3, padding=1))
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(net, LoraConfig(r=2, lora_alpha=4, target_modules=["0", "1", "2"]))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.2)
    x = torch.rand(1, 2, 5, 6, 7)
    with torch.no_grad():
        ref = peft_model(x)
        out = merge_lora(peft_model)(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", [n for n in ENCODERS.names() if not ENCODERS.tags(n).get("test")])
def test_default_lora_targets_cover_most_of_each_released_encoder(name):
    """Each family's default ``lora_target_modules`` adapts the weight matrices that hold most
    of the encoder (attention/SSM projections and MLPs, or convolutions). The Mamba patterns
    used to leave out the FFNs: 21 % (VMamba) and 7 % (GroupMamba) of the weights were adapted."""
    import re

    dims = ENCODERS.tags(name).get("dims", 2)
    encoder = medfm.create_encoder(name, in_chans=1, img_size=16 if dims == 3 else 28)
    layers = {n: m.weight.numel() for n, m in encoder.named_modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))}
    adapted = sum(v for n, v in layers.items() if re.fullmatch(encoder.lora_target_modules, n))
    assert adapted / sum(layers.values()) >= 0.75, f"{name}: LoRA adapts {adapted / sum(layers.values()):.0%} of the weights"
