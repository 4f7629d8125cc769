"""timm's pretrained weights: a cached file is used without the network; offline fails fast."""
import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

import medfm
from medfm.encoders.timm_encoders import timm_weights_source


def _no_network(*args, **kwargs):
    raise ConnectionError("no network in tests")


def test_cached_timm_weights_load_without_network(tmp_path, monkeypatch):
    torch.manual_seed(3)
    reference = timm.create_model("test_resnet", num_classes=1000)
    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs").mkdir()
    (tmp_path / "models--timm--test_resnet.r160_in1k" / "refs" / "main").write_text("abc123")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", _no_network)
    assert timm_weights_source("test_resnet") == {"file": str(snapshot / "model.safetensors")}
    enc = medfm.create_encoder("resnet_test", in_chans=3, img_size=96, pretrained="timm")  # > 64 px: timm stem kept
    got = enc.model.state_dict()
    assert got.keys() and all(torch.equal(v, reference.state_dict()[k]) for k, v in got.items())


def test_uncached_timm_weights_offline_fail_fast_with_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", _no_network)
    with pytest.raises(RuntimeError, match=r"timm/test_resnet.r160_in1k; ConnectionError\). Offline, pass pretrained=None"):
        medfm.create_encoder("resnet_test", in_chans=3, img_size=32, pretrained="timm")
