"""Zero-shot classification: scores vs a hand computation, a learnable toy task, the eval entry point."""
import json
import re

import numpy as np
import pytest
import torch

import medfm
from medfm.evaluation.evaluate import default_checkpoint_size
from medfm.evaluation.zeroshot import chance_levels, class_embeddings, zeroshot_classify, zeroshot_eval
from medfm.registry import OBJECTIVES
from tests.conftest import ImageItems, save_tiny_bert

WORDS = ["a", "chest", "x", "ray", "showing", "pneumonia", "no", "(", ")", "normal", "bright", "dark",
     "frontal", "radiograph", "with", "image", "of", "the", ":"]
pytestmark = pytest.mark.usefixtures("tmp_medfm_cache")


@pytest.fixture(scope="module")
def text_spec(tmp_path_factory):
    return {"name": "hf", "model_name_or_path": str(save_tiny_bert(tmp_path_factory.mktemp("bert"), WORDS))}


def _clip(text_spec, augment=True, img_size=28):
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=img_size)
    return OBJECTIVES.build("clip", encoder=enc, text_encoder=text_spec, embed_dim=16, proj_hidden_dim=32,
                            image_proj_layers=1, augment=augment)


def test_scores_match_a_hand_computation(text_spec):
    model = _clip(text_spec).eval()
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    prompts = [["a chest x ray", "a frontal radiograph"], ["bright image"], ["dark image", "the dark x ray"]]
    scores = zeroshot_classify(model, ImageItems(images), prompts, batch_size=2)
    with torch.no_grad():
        classes = []
        for p in prompts:
            t = model.text_proj(model.text_features(p))
            t = t / t.norm(dim=1, keepdim=True)
            m = t.mean(0)
            classes.append(m / m.norm())
        img = model.image_proj(model.encoder(images))
        img = img / img.norm(dim=1, keepdim=True)
        ref = torch.softmax(model.scale() * img @ torch.stack(classes).t(), dim=1)
    assert scores.shape == (5, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)
    assert class_embeddings(model, prompts).shape == (3, 16)


def test_rgb_images_are_converted_for_a_grayscale_encoder(text_spec):
    model = _clip(text_spec).eval()
    gray = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    prompts = [["bright image"], ["dark image"]]
    np.testing.assert_allclose(zeroshot_classify(model, ImageItems(gray.expand(-1, 3, -1, -1)), prompts),
                               zeroshot_classify(model, ImageItems(gray), prompts), atol=1e-5)


def test_a_failing_batch_leaves_a_training_model_in_train_mode(text_spec):
    """zeroshot_classify switched the model to eval and only restored train mode on success."""
    model = _clip(text_spec).train()
    wrong = ImageItems(torch.full((2, 1, 28, 28), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        zeroshot_classify(model, wrong, [["bright image"], ["dark image"]])
    assert model.training and model.encoder.training


def test_a_trained_toy_clip_classifies_unseen_images_zero_shot(text_spec):
    """Bright images captioned "bright image", dark ones "dark image": zero-shot must separate new ones."""
    g = torch.Generator().manual_seed(0)

    def sample(n):
        labels = torch.arange(n) % 2
        base = torch.where(labels.view(-1, 1, 1, 1) == 0, 0.8, 0.2)
        return (base + 0.1 * torch.rand(n, 1, 28, 28, generator=g)).clamp(0, 1), labels

    model = _clip(text_spec, augment=False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(25):
        images, labels = sample(16)
        texts = ["bright image" if y == 0 else "dark image" for y in labels]
        loss = model({"image": images, "text": texts}, torch.Generator().manual_seed(step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_images, test_labels = sample(20)
    scores = zeroshot_classify(model, ImageItems(test_images), [["bright image"], ["dark image"]])
    assert (scores.argmax(1) == test_labels.numpy()).mean() >= 0.9


def test_chance_levels():
    assert chance_levels(np.array([[0], [1], [1], [1]]), 2) == {"acc_uniform": 0.5, "acc_majority": 0.75,
                                                              "auc": 0.5, "balanced_acc": 0.5}


def test_zeroshot_eval_writes_a_report_against_chance(text_spec, write_medmnist, tmp_path):
    root = write_medmnist("pneumoniamnist")
    ckpt = medfm.save_pretrained(_clip(text_spec).eval(), tmp_path / "clip")
    res = zeroshot_eval(str(ckpt), "pneumoniamnist", split="test", data_root=str(root), output=tmp_path / "zs")
    written = json.loads((tmp_path / "zs" / "results.json").read_text())
    assert written["meta"]["protocol"] == "zeroshot" and res["meta"]["chance"]["acc_uniform"] == 0.5
    assert written["meta"]["prompts"][1][0] == "a chest X-ray showing pneumonia"
    assert 0.0 <= written["metrics"]["acc"] <= 1.0 and written["n_samples"] == 4
    assert (tmp_path / "zs" / "predictions.npz").is_file()
    (tmp_path / "zs" / "stale.png").write_bytes(b"x")  # a rerun replaces the earlier evaluation whole
    zeroshot_eval(str(ckpt), "pneumoniamnist", split="test", data_root=str(root), output=tmp_path / "zs")
    assert not (tmp_path / "zs" / "stale.png").exists() and (tmp_path / "zs" / "results.json").is_file()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")  # was written into, like the checkpoint folder itself
    for out, why in ((tmp_path / "mine", "holds no earlier `medfm eval --data` --protocol zeroshot report"),
                     (ckpt, "is the checkpoint evaluated")):
        with pytest.raises(FileExistsError, match=re.escape(why)):
            zeroshot_eval(str(ckpt), "pneumoniamnist", split="test", data_root=str(root), output=out)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_zeroshot_needs_an_image_text_checkpoint(text_spec, write_medmnist, tmp_path):
    from medfm.adapters.classification import ImageClassifier

    root = write_medmnist("pneumoniamnist")
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    ckpt = medfm.save_pretrained(ImageClassifier(enc, num_classes=2, task="binary-class").eval(), tmp_path / "cls")
    with pytest.raises(ValueError, match="image-text checkpoint"):
        zeroshot_eval(str(ckpt), "pneumoniamnist", data_root=str(root), output=tmp_path / "zs")
    with pytest.raises(ValueError, match="one non-empty list of strings per class"):
        zeroshot_classify(_clip(text_spec), ImageItems(torch.rand(2, 1, 28, 28)), ["bright", "dark"])


def test_cli_eval_protocol_zeroshot(text_spec, write_medmnist, tmp_path, capsys):
    from medfm.cli import main

    root = write_medmnist("pneumoniamnist")
    ckpt = medfm.save_pretrained(_clip(text_spec).eval(), tmp_path / "clip")
    out = tmp_path / "zs"
    assert main(["eval", str(ckpt), "--data", "pneumoniamnist", "--protocol", "zeroshot", "--data-root", str(root),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads((out / "results.json").read_text())
    assert f"ACC {written['metrics']['acc']:.4f}" in printed and "chance ACC 0.5000" in printed
    assert main(["eval", str(ckpt), "--suite", "eval_suites/local.yaml", "--protocol", "zeroshot"]) == 2
    assert "--protocol zeroshot scores exactly one" in capsys.readouterr().err


# -- the default size (the image encoder's img_size) is checked from config.json, before the model is loaded ------
class Loaded(Exception):
    pass


@pytest.fixture
def clip32(text_spec, tmp_path, monkeypatch):
    """A CLIP checkpoint whose image encoder takes 32 px images (MedMNIST is released at 28/64/128/224), and a
    ``from_pretrained`` that raises :class:`Loaded` instead of loading it."""
    import medfm.hub

    ckpt = medfm.save_pretrained(_clip(text_spec, augment=False, img_size=32).eval(), tmp_path / "clip32")

    def no_load(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(medfm.hub, "from_pretrained", no_load)
    return ckpt


def test_an_unreleased_default_size_is_refused_before_the_model_is_loaded(tmp_path, clip32):
    from medfm.data.errors import UnsupportedSizeError

    with pytest.raises(UnsupportedSizeError, match=r"^MedMNIST 'pneumoniamnist' is not released at size 32; .*"
                       r"\(the default size is the checkpoint's image encoder img_size, 32; choose another"):
        zeroshot_eval(str(clip32), "pneumoniamnist", output=tmp_path / "zs")  # old: Loaded, then the data error
    assert not (tmp_path / "zs").exists()


def test_a_given_size_is_not_replaced_by_the_recorded_one(tmp_path, clip32):
    with pytest.raises(Loaded):  # size 28 given: the checkpoint's 32 is not checked, the model is loaded next
        zeroshot_eval(str(clip32), "pneumoniamnist", output=tmp_path / "zs", size=28)


def test_the_default_is_the_recorded_img_size_and_none_without_one(tmp_path, clip32):
    assert json.loads((clip32 / "config.json").read_text())["preprocessing"]["img_size"] == 32  # the encoder's
    cfg = {"kind": "objective", "name": "clip", "encoder": {"name": "resnet_test"}}
    for name, extra, want in (("released", {"preprocessing": {"img_size": 64}}, 64), ("bare", {}, None),
                              ("odd", {"preprocessing": [28]}, None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, **extra}))
        assert default_checkpoint_size(tmp_path / name, "pneumoniamnist", "clip") == want  # None: the loaded one


def test_eval_data_refuses_an_unreleased_default_size_before_the_model_is_loaded(tmp_path, monkeypatch):
    """``medfm eval --data`` takes its default size from the same record (it was checked once the model loaded)."""
    import medfm.hub
    from medfm.adapters.classification import ImageClassifier
    from medfm.data.errors import UnsupportedSizeError
    from medfm.evaluation.evaluate import evaluate_checkpoint

    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=32)
    ckpt = medfm.save_pretrained(ImageClassifier(enc, 2, "binary-class", ["normal", "pneumonia"]), tmp_path / "c32")

    def no_load(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(medfm.hub, "from_pretrained", no_load)
    with pytest.raises(UnsupportedSizeError, match=r"not released at size 32; .*\(the default size is the "
                       r"checkpoint's image encoder img_size, 32"):
        evaluate_checkpoint(str(ckpt), "pneumoniamnist", output=tmp_path / "ev")  # old: Loaded
    assert not (tmp_path / "ev").exists()
    with pytest.raises(Loaded):  # a size given is not replaced by the recorded one
        evaluate_checkpoint(str(ckpt), "pneumoniamnist", output=tmp_path / "ev", size=28)
