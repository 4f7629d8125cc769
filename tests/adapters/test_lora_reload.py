"""Adapter-only LoRA checkpoints of every task model reload to the exact same outputs."""
from __future__ import annotations

import pytest
import torch

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.adapters.lora import LoraSettings, apply_lora, save_adapter
from medfm.adapters.segmentation import SEG_HEAD_MODULES, SegmentationModel
from medfm.adapters.vqa import VQA_HEAD_MODULES, VQAModel
from medfm.hub import from_pretrained
from medfm.training.adaptation import keep_lora_base
from tests.conftest import save_tiny_bert

WORDS = ["is", "there", "a", "mass", "what", "plane", "?"]


def _classification(_tmp):
    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=3)
    x = torch.rand(4, 1, 28, 28)
    return model, model.head_modules, (x,), lambda out: model.loss(out, torch.tensor([0, 1, 2, 0])), lambda out: out


def _segmentation(_tmp):
    model = SegmentationModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=3)
    x = torch.rand(2, 1, 28, 28)
    return model, SEG_HEAD_MODULES, (x,), lambda out: model.loss(out, torch.randint(0, 3, (2, 28, 28))), lambda out: out


def _vqa(tmp):
    spec = {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp / "bert", WORDS)), "max_length": 8}
    model = VQAModel(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), ["yes", "no", "axial"], 32,
                     closed_answers=["yes", "no"], open_answers=["axial"], text_encoder=spec, fusion="cross_attention",
                     dim=16, heads=2, layers=1, dropout=0.0)
    q, m = model.question_tokens(["is there a mass ?", "what plane ?"])
    x = torch.rand(2, 1, 28, 28)
    return (model, VQA_HEAD_MODULES, (x, q, m),
            lambda out: model.loss(out, torch.tensor([0, 2]), torch.tensor([True, False])), lambda out: out["logits"])


@pytest.mark.parametrize("build, train_norm", [(_segmentation, True), (_vqa, True), (_classification, False)],
                         ids=["segmentation", "vqa", "classification-frozen-norm"])
def test_lora_adapter_reloads_bit_exactly(tmp_path, build, train_norm):
    """train_norm=False: the frozen BatchNorms' running statistics still move and must be saved."""
    torch.manual_seed(0)
    model, heads, inputs, loss_fn, logits = build(tmp_path)
    base = keep_lora_base(model, "lora", None, tmp_path / "run")
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4, train_norm=train_norm), head_modules=heads)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(2):  # LoRA, head and BatchNorm statistics all move
        loss = loss_fn(peft_model(*inputs))
        opt.zero_grad()
        loss.backward()
        opt.step()
    peft_model.eval().requires_grad_(False)  # as reloaded: torch's attention fast path depends on requires_grad
    with torch.no_grad():
        ref = logits(peft_model(*inputs))
    again = from_pretrained(save_adapter(peft_model, tmp_path / "adapter", base))
    again.eval()
    with torch.no_grad():
        assert torch.equal(logits(again(*inputs)), ref)


def test_resumed_run_keeps_the_base_its_adapter_was_trained_from(tmp_path):
    def model(seed):
        torch.manual_seed(seed)
        return ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)

    first = keep_lora_base(model(0), "lora", None, tmp_path)
    start = from_pretrained(first).state_dict()
    assert keep_lora_base(model(1), "lora", None, tmp_path, resume=True) == first  # e.g. a recipe edited in between
    assert all(torch.equal(v, from_pretrained(first).state_dict()[k]) for k, v in start.items())
    keep_lora_base(model(1), "lora", None, tmp_path)  # a new run writes its own start weights
    assert not torch.equal(from_pretrained(first).state_dict()["task_head.weight"], start["task_head.weight"])


def test_adapter_metadata_cannot_overwrite_the_keys_the_adapter_writes(tmp_path):
    """extra_config={"base_checkpoint": ...} or {"adapter": ...} was silently overwritten by write_adapter."""
    from medfm.adapters.lora import write_adapter
    from medfm.hub import CheckpointError, load_config

    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
    base = keep_lora_base(model, "lora", None, tmp_path / "run")
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4), head_modules=model.head_modules)
    for extra, named in [({"base_checkpoint": "hf-hub:org/other", "note": 1}, "'base_checkpoint'"),
                         ({"adapter": "ia3", "kind": "adapter"}, "'adapter', 'kind'")]:
        with pytest.raises(CheckpointError, match=rf"^extra_config cannot set {named}: .*base_checkpoint, adapter"):
            save_adapter(peft_model, tmp_path / "adapter", base, extra_config=extra)
        assert not any(p.name.startswith((".adapter", "adapter")) for p in tmp_path.iterdir())  # no half-written folder
        (tmp_path / "trainer_tmp").mkdir()
        with pytest.raises(ValueError, match=named):  # the trainer's save_fn: nothing written into its folder
            write_adapter(peft_model, tmp_path / "trainer_tmp", base, extra_config=extra)
        assert not any((tmp_path / "trainer_tmp").iterdir())
        (tmp_path / "trainer_tmp").rmdir()
    cfg = load_config(save_adapter(peft_model, tmp_path / "adapter", base, extra_config={"note": 1}))
    assert (cfg["base_checkpoint"], cfg["adapter"], cfg["note"]) == (str(base), "lora", 1)


def test_merged_checkpoint_keeps_the_adapter_metadata_whatever_keys_model_config_writes(tmp_path, monkeypatch):
    """``merge_adapter`` typed out model_config's key names to drop from the adapter's config.json: a key
    added to model_config later (here ``"future"``) was carried over as metadata, and saving the merged
    model refused it as a clash. The merged config keeps the adapter's metadata, not ``"adapter"``."""
    import medfm.hub as hub
    from medfm.adapters.lora import merge_adapter

    written = hub.model_config
    monkeypatch.setattr(hub, "model_config", lambda model, extra=None: hub.with_extra_config(
        {**written(model), "future": 1}, extra))
    model = ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2)
    base = keep_lora_base(model, "lora", None, tmp_path / "run")
    peft_model = apply_lora(model, LoraSettings(rank=2, alpha=4), head_modules=model.head_modules)
    adapter = save_adapter(peft_model, tmp_path / "adapter", base, extra_config={"note": 1})
    cfg = hub.load_config(merge_adapter(adapter, tmp_path / "merged"))
    assert (cfg["note"], cfg["base_checkpoint"], cfg["future"]) == (1, str(base), 1) and "adapter" not in cfg
    assert cfg["merged_from"] == str(adapter.resolve())
