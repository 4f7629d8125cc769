"""VQA adapter: shapes for CNN/ViT x fusions, token cache, LoRA wiring, exact save/load, pipeline, runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import medfm
from medfm.adapters.lora import LoraSettings, apply_lora
from medfm.adapters.vqa import FUSIONS, MASKED, VQA_HEAD_MODULES, VQAModel
from medfm.encoders import create_encoder
from medfm.hub import from_pretrained, save_pretrained
from tests.conftest import fit_losses
from medfm.registry import ADAPTERS
from medfm.text.encoders import create_text_encoder
from tests.conftest import save_tiny_bert
from tests.helpers.vqa_rad import WORDS, write_tiny_vqa_rad

ANSWERS = ["yes", "no", "axial", "left", "right"]
QUESTIONS = ["is there a mass ?", "what plane ?", "which side is the fracture ?"]


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory):
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), WORDS)),
            "max_length": 16}


def _model(text_spec, encoder="resnet_test", fusion="cross_attention", **kw):
    torch.manual_seed(0)
    enc = create_encoder(encoder, in_chans=1, img_size=28)
    return VQAModel(enc, ANSWERS, 32, closed_answers=["yes", "no"], open_answers=["axial", "left", "right"],
                    text_encoder=text_spec, fusion=fusion, dim=16, heads=2, layers=1, dropout=0.0, **kw)


def test_encode_tokens_pads_and_matches_single_runs(text_spec):
    text = create_text_encoder(text_spec)
    hidden, mask = text.encode_tokens(QUESTIONS + QUESTIONS[:1])
    lengths = [len(text.tokenizer(q)["input_ids"]) for q in QUESTIONS]
    assert hidden.shape == (4, max(lengths), 32) and mask.sum(1).tolist() == lengths + lengths[:1]
    assert torch.all(hidden[~mask] == 0)
    alone, _ = text.encode_tokens([QUESTIONS[1]])
    torch.testing.assert_close(hidden[1, :lengths[1]], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(hidden[0], hidden[3])


@pytest.mark.parametrize("encoder", ["resnet_test", "vit_test"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_forward_shapes_and_training_fits(text_spec, encoder, fusion):
    model = _model(text_spec, encoder, fusion)
    q, m = model.question_tokens(QUESTIONS)
    x = torch.rand(3, 1, 28, 28)
    out = model(x, q, m)
    assert out["logits"].shape == (3, len(ANSWERS)) and out["type_logit"].shape == (3,)
    target, closed = torch.tensor([0, 2, 3]), torch.tensor([True, False, False])
    losses = fit_losses(lambda _: model.loss(model(x, q, m), target, closed),
                        [p for n, p in model.named_parameters() if not n.startswith("encoder.")], steps=15, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]


def test_out_of_vocab_targets_are_skipped_and_questions_still_ranked(text_spec):
    model = _model(text_spec).eval()
    q, m = model.question_tokens(QUESTIONS[:2])
    out = model(torch.rand(2, 1, 28, 28), q, m)
    loss = model.loss(out, torch.tensor([-1, 1]), torch.tensor([False, True]))
    assert torch.isfinite(loss)
    ranked = model.answer(torch.rand(2, 1, 28, 28), QUESTIONS[:2], top_k=5)
    assert all(sorted(a for a, _ in r) == sorted(ANSWERS) for r in ranked)  # every answer ranked


def test_type_mask_pushes_other_type_down(text_spec):
    model = _model(text_spec, type_mask=True).eval()
    with torch.no_grad():
        model.type_head.bias.fill_(100.0)  # predicts CLOSED for every question
    q, m = model.question_tokens(QUESTIONS)
    with torch.no_grad():
        logits = model(torch.rand(3, 1, 28, 28), q, m)["logits"]
    assert set(logits.argmax(-1).tolist()) <= {0, 1}
    assert float(logits[:, 2:].max()) < MASKED / 2
    model.train()
    assert model(torch.rand(3, 1, 28, 28), q, m)["logits"].min().item() > MASKED / 2  # no mask in training


def test_save_load_reproduces_answers_exactly(text_spec, tmp_path):
    model = _model(text_spec, "vit_test", "coattention").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.rand(3, 1, 28, 28)
    before = model.answer(x, QUESTIONS, top_k=3)
    save_pretrained(model, tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["name"] == "vqa" and cfg["args"]["text_encoder"] == text_spec  # referenced, not saved
    loaded = from_pretrained(tmp_path / "ckpt")
    assert not any("bert" in k or "text" in k for k in loaded.state_dict())
    assert loaded.answer(x, QUESTIONS, top_k=3) == before
    q, m = model.question_tokens(QUESTIONS)
    assert torch.equal(loaded(x, q, m)["logits"], model(x, q, m)["logits"])


def test_pipeline_returns_top_k(text_spec, tmp_path):
    model = _model(text_spec).eval()
    save_pretrained(model, tmp_path / "ckpt")
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    img.save(tmp_path / "x.png")
    pipe = medfm.pipeline("visual-question-answering", model=tmp_path / "ckpt", top_k=3)
    from_path = pipe(str(tmp_path / "x.png"), "is there a mass ?")
    assert len(from_path) == 3 and [d["score"] for d in from_path] == sorted((d["score"] for d in from_path), reverse=True)
    assert from_path == pipe(img, "is there a mass ?")  # same preprocessing for a path and a PIL image
    assert {d["answer"] for d in from_path} <= set(ANSWERS)
    both = pipe([img, img.convert("L")], ["what plane ?", "which side ?"], top_k=2)
    assert len(both) == 2 and all(len(r) == 2 for r in both)
    with pytest.raises(ValueError, match="images for"):
        pipe([img], ["a ?", "b ?"])


def test_lora_trains_only_adapters_head_and_fusion(text_spec):
    model = _model(text_spec)
    peft_model = apply_lora(model, LoraSettings(rank=2), head_modules=VQA_HEAD_MODULES)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable)
    assert any(".fusion." in n for n in trainable) and any(".task_head." in n for n in trainable)
    for n in trainable:
        assert "lora_" in n or "modules_to_save" in n, n
    enc_base = {n: p.detach().clone() for n, p in peft_model.named_parameters()
                if ".encoder." in n and "lora_" not in n and not p.requires_grad}
    inner = peft_model.base_model.model
    q, m = inner.question_tokens(QUESTIONS)
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    loss = inner.loss(inner(torch.rand(3, 1, 28, 28), q, m), torch.tensor([0, 2, 3]), torch.tensor([True, False, False]))
    loss.backward()
    opt.step()
    assert all(torch.equal(p, enc_base[n]) for n, p in peft_model.named_parameters() if n in enc_base)


def test_registry_and_errors(text_spec):
    assert "vqa" in ADAPTERS
    with pytest.raises(ValueError, match="did you mean 'bilinear'"):
        _model(text_spec, fusion="bilinar")
    with pytest.raises(ValueError, match="duplicates"):
        VQAModel(create_encoder("resnet_test", in_chans=1, img_size=28), ["a", "a"], 32)
    with pytest.raises(ValueError, match="images for"):
        _model(text_spec).answer(torch.rand(1, 1, 28, 28), QUESTIONS)


def test_images_of_another_size_are_a_clear_error(text_spec):
    """A CNN encoder takes 56 px images, but the image-token position embedding was built for
    28 px: torch used to fail with a bare broadcast error inside the projector."""
    model = _model(text_spec).eval()
    q, m = model.question_tokens(QUESTIONS[:2])
    with pytest.raises(ValueError, match="image tokens but the position embedding was built for"):
        model(torch.rand(2, 1, 56, 56), q, m)


@pytest.mark.parametrize("fusion", ["bilinear", "cross_attention", "coattention"])
def test_a_question_mask_without_real_tokens_is_refused(text_spec, fusion):
    """An all-padding q_mask row gave NaN logits with bilinear attention (softmax over all -inf)."""
    model = _model(text_spec, fusion=fusion).eval()
    q, m = model.question_tokens(QUESTIONS[:2])
    m = m.clone()
    m[1] = False
    with pytest.raises(ValueError, match=r"question\(s\) \[1\] have no real token"):
        model(torch.rand(2, 1, 28, 28), q, m)


def test_cli_runner_end_to_end(text_spec, tmp_path):
    from medfm.cli import main

    write_tiny_vqa_rad(tmp_path / "data")
    recipe = tmp_path / "vqa.yaml"
    recipe.write_text(json.dumps({  # JSON is YAML
        "data": {"size": 28}, "encoder": {"name": "resnet_test"}, "text_encoder": text_spec,
        "head": {"fusion": "bilinear", "dim": 16, "heads": 2, "layers": 1}, "mode": "frozen", "top_k": 3, "n_boot": 20,
        "train": {"epochs": 2, "batch_size": 4, "lr": 1e-2, "warmup_epochs": 0, "precision": "fp32"}}))
    out = tmp_path / "run"
    assert main(["vqa", str(recipe), "--output", str(out), "--data-root", str(tmp_path / "data")]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["n_questions"] == 2 and res["out_of_vocab"]["n"] == 1 and res["vocab_size"] == 4
    assert res["metrics"]["open"]["n"] == 1 and res["metrics"]["open"]["acc"] == 0.0  # OOV answer counted wrong
    assert res["reload_check"] == {"same_top1": True, "max_abs_logit_diff": 0.0}
    assert len(res["meta"]["data_md5"]) == 2 and len(res["meta"]["checkpoint_sha256"]) == 64
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert not preds[1]["in_vocab"] and len(preds[1]["top_k"]) == 3  # OOV question still gets ranked answers
    for name in ("report.md", "accuracy_by_question_type.png", "training_curve.png", "metrics.jsonl", "config.yaml"):
        assert (out / name).is_file(), name
    assert from_pretrained(out / "checkpoint").answers == ["axial", "left", "no", "yes"]
    recipe.write_text(json.dumps({"encoder": {"name": "resnet_test"}, "requires_init": True}))
    assert main(["vqa", str(recipe), "--output", str(tmp_path / "run2"), "--data-root", str(tmp_path / "data")]) == 2


def test_lora_run_merges_and_reloads(text_spec, tmp_path):
    from medfm.training.vqa import VQARecipe, run_vqa
    from medfm.config import from_dict

    write_tiny_vqa_rad(tmp_path / "data")
    recipe = from_dict(VQARecipe, {
        "data": {"size": 28}, "encoder": {"name": "resnet_test"}, "text_encoder": text_spec, "mode": "lora",
        "lora": {"rank": 2}, "head": {"dim": 16, "heads": 2, "layers": 1}, "n_boot": 10,
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 0, "precision": "fp32"}})
    res = run_vqa(recipe, tmp_path / "run", data_root=str(tmp_path / "data"))
    assert res["meta"]["mode"] == "lora" and res["reload_check"]["same_top1"]
    assert res["reload_check"]["max_abs_logit_diff"] < 1e-5  # merged LoRA weights saved as a plain checkpoint
    assert not any("lora" in k for k in from_pretrained(tmp_path / "run" / "checkpoint").state_dict())


@pytest.mark.parametrize("precision,expect", [("bf16", True), ("fp32", False)])
def test_runner_trains_under_the_recipes_precision(text_spec, tmp_path, monkeypatch, precision, expect):
    """train.precision reaches the VQA training forward (it used to be ignored: always fp32)."""
    import medfm.training.vqa as V
    from medfm.config import from_dict

    write_tiny_vqa_rad(tmp_path / "data")
    seen = []
    real = V._logits

    def spy(model, split, idx, feats):
        out = real(model, split, idx, feats)
        if model.training:
            seen.append((torch.is_autocast_enabled("cpu"), out["logits"].dtype))
        return out

    monkeypatch.setattr(V, "_logits", spy)
    recipe = from_dict(V.VQARecipe, {
        "data": {"size": 28}, "encoder": {"name": "resnet_test"}, "text_encoder": text_spec, "mode": "full",
        "head": {"dim": 16, "heads": 2, "layers": 1}, "n_boot": 10,
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "warmup_epochs": 0, "precision": precision}})
    res = V.run_vqa(recipe, tmp_path / "run", data_root=str(tmp_path / "data"))
    assert seen and all(on == expect for on, _ in seen)
    assert all(dt == (torch.bfloat16 if expect else torch.float32) for _, dt in seen)
    assert res["reload_check"]["same_top1"]


@pytest.mark.parametrize("in_rename_window", [False, True])
def test_resume_after_a_kill_matches_the_uninterrupted_run(text_spec, tmp_path, monkeypatch, in_rename_window):
    """in_rename_window: killed while the state was renamed (train_state/ set aside as .train_state.old-*, a
    half-written .train_state.tmp-* beside it); the resume started over from epoch 0 and left both for good."""
    import medfm.training.vqa as V
    from medfm.cli import main

    write_tiny_vqa_rad(tmp_path / "data")
    recipe = tmp_path / "vqa.yaml"
    recipe.write_text(json.dumps({
        "data": {"size": 28}, "encoder": {"name": "resnet_test"}, "text_encoder": text_spec,
        "head": {"fusion": "bilinear", "dim": 16, "heads": 2, "layers": 1, "dropout": 0.3}, "mode": "full",
        "n_boot": 20, "train": {"epochs": 3, "batch_size": 2, "lr": 1e-2, "warmup_epochs": 0, "precision": "fp32"}}))
    args = ["--data-root", str(tmp_path / "data")]
    assert main(["vqa", str(recipe), "--output", str(tmp_path / "full")] + args) == 0
    calls = {"n": 0}
    real = V.predict_logits

    def dies_in_epoch_3(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 3 trained, its state not yet saved
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(V, "predict_logits", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        V.run_vqa(V.load_vqa_recipe(recipe), tmp_path / "killed", data_root=str(tmp_path / "data"))
    monkeypatch.setattr(V, "predict_logits", real)
    state = json.loads((tmp_path / "killed" / "train_state" / "trainer_state.json").read_text())
    assert state["counters"]["epoch"] == 2
    if in_rename_window:
        (tmp_path / "killed" / "train_state").rename(tmp_path / "killed" / ".train_state.old-abc")
        (tmp_path / "killed" / ".train_state.tmp-def").mkdir()
    assert main(["vqa", str(recipe), "--output", str(tmp_path / "killed"), "--resume"] + args) == 0
    assert not list((tmp_path / "killed").glob(".train_state.*"))
    a = from_pretrained(tmp_path / "full" / "checkpoint").state_dict()
    b = from_pretrained(tmp_path / "killed" / "checkpoint").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    full_log = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert len(full_log) == 3 and (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines() == full_log
