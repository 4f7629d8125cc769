"""ImageClassifier's optional feature BatchNorm (MAE-style linear probing) and the frozen linear mode."""
import textwrap

import torch

from medfm.adapters.classification import ImageClassifier
from medfm.encoders import create_encoder
from medfm.hub import from_pretrained, save_pretrained


def _clf(head_norm: bool) -> ImageClassifier:
    torch.manual_seed(0)
    enc = create_encoder("resnet_test", in_chans=1, img_size=28)
    return ImageClassifier(enc, num_classes=2, task="binary-class", head_norm=head_norm)


def test_head_norm_standardises_features_by_hand_and_round_trips(tmp_path):
    clf = _clf(head_norm=True).train()
    clf.encoder.eval()
    x = torch.rand(8, 1, 28, 28)
    feats = clf.encoder(x)
    logits = clf(x)
    z = (feats - feats.mean(0)) / torch.sqrt(feats.var(0, unbiased=False) + 1e-5)  # batch statistics in train mode
    assert torch.allclose(logits, clf.task_head(z), atol=1e-5)
    # running statistics after one batch (momentum 0.1): 0.1 * batch mean, 0.9 + 0.1 * unbiased batch var
    assert torch.allclose(clf.head_norm.running_mean, 0.1 * feats.mean(0).detach(), atol=1e-6)
    assert torch.allclose(clf.head_norm.running_var, 0.9 + 0.1 * feats.var(0).detach(), atol=1e-5)
    assert not any(p is not None for p in (clf.head_norm.weight, clf.head_norm.bias))  # affine=False
    clf.eval()
    path = save_pretrained(clf, tmp_path / "ckpt")
    again = from_pretrained(path).eval()
    assert isinstance(again.head_norm, torch.nn.BatchNorm1d)
    assert torch.equal(again.head_norm.running_var, clf.head_norm.running_var)
    assert torch.equal(again(x), clf(x))


def test_without_head_norm_the_head_sees_raw_features_and_old_configs_load(tmp_path):
    clf = _clf(head_norm=False).eval()
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(clf(x), clf.task_head(clf.encoder(x)))
    assert "head_norm" not in clf.medfm_spec["args"]  # configs written before the option are unchanged
    again = from_pretrained(save_pretrained(clf, tmp_path / "ckpt")).eval()
    assert isinstance(again.head_norm, torch.nn.Identity) and torch.equal(again(x), clf(x))


def test_linear_mode_with_head_norm_keeps_the_encoder_and_tracks_feature_statistics(tmp_path, write_medmnist, monkeypatch):
    from medfm.cli import main
    from tests.conftest import fake_medmnist_arrays

    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(48, 16, 20)))
    monkeypatch.setenv("MEDFM_DATA", str(root))
    start = _clf(head_norm=False)
    base = save_pretrained(start, tmp_path / "base")
    (tmp_path / "lin.yaml").write_text(textwrap.dedent(f"""
        data: {{dataset: pneumoniamnist, size: 28}}
        encoder: {{name: resnet_test, pretrained: {base}}}
        mode: linear
        head_norm: true
        train: {{epochs: 2, batch_size: 16, lr: 1.0e-2, precision: fp32, log_every: 1, warmup_epochs: 0}}
    """))
    assert main(["finetune", str(tmp_path / "lin.yaml"), "--output", str(tmp_path / "out")]) == 0
    trained = from_pretrained(str(tmp_path / "out" / "model"))
    before = start.encoder.state_dict()
    for k, v in trained.encoder.state_dict().items():  # weights and BatchNorm buffers of the encoder untouched
        assert torch.equal(v, before[k]), k
    assert isinstance(trained.head_norm, torch.nn.BatchNorm1d)
    assert int(trained.head_norm.num_batches_tracked) == 6  # 48 images / 16 per step x 2 epochs


def test_lora_mode_saves_the_head_norm_statistics_with_the_adapter(tmp_path, write_medmnist, monkeypatch):
    from medfm.cli import main
    from tests.conftest import fake_medmnist_arrays

    assert _clf(head_norm=True).head_modules == ("task_head", "head_norm")
    assert _clf(head_norm=False).head_modules == ("task_head",)
    root = write_medmnist("pneumoniamnist", arrays=fake_medmnist_arrays("pneumoniamnist", counts=(48, 16, 20)))
    monkeypatch.setenv("MEDFM_DATA", str(root))
    (tmp_path / "lora.yaml").write_text(textwrap.dedent("""
        data: {dataset: pneumoniamnist, size: 28}
        encoder: {name: resnet_test}
        mode: lora
        lora: {rank: 4, alpha: 8}
        head_norm: true
        train: {epochs: 2, batch_size: 16, lr: 1.0e-3, precision: fp32, log_every: 1}
    """))
    assert main(["finetune", str(tmp_path / "lora.yaml"), "--output", str(tmp_path / "out")]) == 0
    loaded = from_pretrained(str(tmp_path / "out" / "adapter")).eval()
    norm = loaded.head_norm.modules_to_save["default"]  # peft's saved copy, the one forward uses
    assert isinstance(norm, torch.nn.BatchNorm1d) and int(norm.num_batches_tracked) == 6
    assert not torch.equal(norm.running_var, torch.ones_like(norm.running_var))  # trained statistics, not a fresh layer
