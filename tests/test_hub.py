import json

import pytest
import torch

import medfm
from medfm.adapters.lora import LoraSettings, apply_lora, load_adapter, merge_adapter, save_adapter
from medfm.hub import CheckpointError, from_pretrained, load_encoder_weights, resolve_checkpoint, save_pretrained
from tests.helpers.classifiers import tiny_classifier as _clf




def test_layout_and_bit_exact_round_trip(tmp_path):
    model = _clf().eval()
    path = save_pretrained(model, tmp_path / "ckpt", extra_config={"training": {"data": {"flag": "pneumoniamnist"}}})
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["kind"] == "adapter" and cfg["name"] == "classification"
    assert cfg["encoder"] == {"name": "resnet_test", "in_chans": 1, "img_size": 28}
    assert cfg["preprocessing"]["mean"] == [0.5] and cfg["args"]["label_names"] == ["normal", "pneumonia"]
    again = from_pretrained(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert "model-index" not in (path / "README.md").read_text()  # no results yet
    assert "Intended use" in (path / "README.md").read_text()


def test_identical_weights_write_identical_bytes(tmp_path):
    """The weights file is a function of the tensors: safetensors writes a header metadata map of
    several keys in a per-call order, which made the sha256 of identical checkpoints differ
    (seen between two bit-identical GPU runs)."""
    model = _clf().eval()
    blobs = {(save_pretrained(model, tmp_path / f"c{i}") / "model.safetensors").read_bytes() for i in range(12)}
    assert len(blobs) == 1


def test_save_replaces_a_checkpoint_but_never_another_folder(tmp_path):
    first = save_pretrained(_clf(0), tmp_path / "ckpt")
    save_pretrained(_clf(1), first)  # a checkpoint is replaced whole
    assert torch.equal(from_pretrained(first).state_dict()["task_head.weight"], _clf(1).state_dict()["task_head.weight"])
    notes = tmp_path / "project"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        save_pretrained(_clf(), notes)
    assert (notes / "notes.txt").read_text() == "keep me" and not (notes / "config.json").exists()
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        save_pretrained(_clf(), notes / "notes.txt")
    (tmp_path / "empty").mkdir()
    assert (save_pretrained(_clf(), tmp_path / "empty") / "config.json").is_file()


def test_missing_corrupt_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        from_pretrained(tmp_path / "nope")
    path = save_pretrained(_clf(), tmp_path / "ckpt")
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        from_pretrained(path)
    (path / "model.safetensors").write_bytes(weights)
    cfg = json.loads((path / "config.json").read_text())
    cfg["args"]["num_classes"] = 3
    cfg["args"]["label_names"] = ["a", "b", "c"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the architecture.*mis-shaped"):
        from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        from_pretrained(path)


def test_encoder_weights_transfer_and_mismatch(tmp_path):
    path = save_pretrained(_clf(seed=1), tmp_path / "ckpt")
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28, pretrained=str(path))
    ref = from_pretrained(path).encoder
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), ref.state_dict().values()))
    with pytest.raises(CheckpointError, match="in_chans=1"):
        load_encoder_weights(medfm.create_encoder("resnet_test", in_chans=3, img_size=28), path)
    with pytest.raises(CheckpointError, match="name='resnet_test'"):
        load_encoder_weights(medfm.create_encoder("vit_test", in_chans=1, img_size=28), path)


def test_hub_ids_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not fetch 'hf-hub:medfm/does-not-exist'.*--local-dir"):
        resolve_checkpoint("hf-hub:medfm/does-not-exist")
    with pytest.raises(CheckpointError, match="hf-hub:"):
        resolve_checkpoint("org/name")


def test_lora_adapter_only_save_reload_and_merge(tmp_path):
    base = save_pretrained(_clf(seed=2), tmp_path / "base")
    model = from_pretrained(base)
    peft_model = apply_lora(model, LoraSettings(rank=4, alpha=8))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.rand(8, 1, 28, 28), torch.tensor([0, 1] * 4)
    peft_model.train()
    for _ in range(3):  # BatchNorm statistics change too: they must be saved
        loss = torch.nn.functional.cross_entropy(peft_model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    peft_model.eval()
    with torch.no_grad():
        ref = peft_model(x)
    adapter = save_adapter(peft_model, tmp_path / "adapter", str(base))
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert not (adapter / "model.safetensors").exists()  # adapter-only
    cfg = json.loads((adapter / "config.json").read_text())
    assert cfg["base_checkpoint"] == str(base.resolve())
    again = from_pretrained(adapter)
    with torch.no_grad():
        assert torch.equal(again(x), ref)
    merged = from_pretrained(merge_adapter(adapter, tmp_path / "merged"))
    with torch.no_grad():
        assert torch.allclose(merged(x), ref, atol=1e-4)
    with pytest.raises(CheckpointError, match="base checkpoint could not be loaded"):
        load_adapter(adapter, base_checkpoint=str(tmp_path / "missing"))
