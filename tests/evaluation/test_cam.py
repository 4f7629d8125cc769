"""medfm.evaluation.cam: Grad-CAM / Eigen-CAM over every registered encoder family, grid PNG."""
import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam")

from medfm.adapters.classification import ImageClassifier  # noqa: E402
from medfm.encoders import ENCODERS, create_encoder, list_encoders  # noqa: E402
from medfm.encoders.base import Encoder  # noqa: E402
from medfm.evaluation import cam as C  # noqa: E402


def _classifier(name, k=3):
    torch.manual_seed(0)
    dims = ENCODERS.tags(name).get("dims", 2)
    enc = create_encoder(name, in_chans=1, img_size=16)
    x = torch.rand(2, 1, 16, 16) if dims == 2 else torch.rand(2, 1, 16, 16, 16)
    return ImageClassifier(enc, k, "multi-class").eval(), x


@pytest.mark.parametrize("name", list_encoders(test=True))
def test_cams_for_every_family(name):
    clf, x = _classifier(name)
    with torch.no_grad():
        want = clf(x)
        got = C.CamModel(clf).eval()(x)
    assert torch.equal(want, got)  # the tap does not change the logits
    assert "_features" not in clf.encoder.__dict__  # the encoder is restored
    cams = C.compute_cams(clf, x, targets=[0, 2])
    for m in C.CAM_METHODS:
        assert cams[m].shape == (x.shape[0], *x.shape[2:])
        assert np.isfinite(cams[m]).all() and cams[m].min() >= 0 and cams[m].max() <= 1 + 1e-6


class _Identity(Encoder):
    """Features = the normalised image itself (B, 1, H, W); pooled by the mean."""

    def __init__(self):
        super().__init__(1, 28, mean=0.0, std=1.0)
        self.num_features = 1

    def _features(self, x):
        return x


def test_gradcam_highlights_the_evidence():
    clf = ImageClassifier(_Identity(), 2, "binary-class")
    head = getattr(clf, "task_head", None) or clf.head
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    x = torch.zeros(1, 1, 28, 28)
    x[..., :, :10] = 1.0  # bright left band drives the class-1 logit
    cam = C.compute_cams(clf, x, targets=[1], methods=("gradcam",))["gradcam"][0]
    assert cam[:, :8].mean() > 0.9 and cam[:, 12:].max() < 0.1


def test_vit_target_and_token_reshape():
    clf, _ = _classifier("vit_test")
    layers, reshape = C.cam_target(C.CamModel(clf))
    assert layers[0] is clf.encoder.model.blocks[-1].norm1
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).reshape(2, 17, 3)  # class token + 4x4 patches (16 px)
    grid = C.tokens_to_grid(tokens)
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[0, :, 0, 1], tokens[0, 2])
    assert torch.equal(reshape(tokens), grid)  # ViT: timm's num_prefix_tokens (1) is dropped
    with pytest.raises(ValueError, match="square"):
        C.tokens_to_grid(torch.zeros(1, 90, 3))
    with pytest.raises(ValueError, match="square"):
        C.tokens_to_grid(torch.zeros(1, 17, 3), prefix=0)


def test_bare_encoder_gets_eigencam_only():
    enc = create_encoder("resnet_test", in_chans=1, img_size=28).eval()
    x = torch.rand(2, 1, 28, 28)
    assert C.compute_cams(enc, x, methods=("eigencam",))["eigencam"].shape == (2, 28, 28)
    with pytest.raises(ValueError, match="needs a classifier head"):
        C.compute_cams(enc, x)
    with pytest.raises(ValueError, match="unknown CAM method"):
        C.compute_cams(enc, x, methods=("scorecam",))


class _Set:
    def __init__(self, n=9, shape=(1, 28, 28)):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, *shape, generator=g)
        self.labels = (np.arange(n) % 3)[:, None]
        self.label_names = ["a", "b", "c"]

    def __len__(self):
        return len(self.images)

    def get_batch(self, idx):
        return {"image": self.images[idx], "label": torch.as_tensor(self.labels[np.asarray(idx), 0])}


def test_cam_grid_png_and_fixed_sample(tmp_path):
    clf, _ = _classifier("resnet_test")
    ds = _Set()
    info = C.cam_grid(clf, ds, tmp_path / "cam.png", per_class=2, seed=1)
    assert (tmp_path / "cam.png").read_bytes()[:4] == b"\x89PNG"
    assert len(info["indices"]) == 6 and info["indices"] == C.sample_per_class(ds.labels, 2, seed=1).tolist()
    assert sorted(np.asarray(ds.labels)[info["indices"], 0].tolist()) == [0, 0, 1, 1, 2, 2]


def test_cam_grid_of_a_2d_model_on_volumes_uses_the_middle_slice(tmp_path):
    clf, _ = _classifier("resnet_test")
    info = C.cam_grid(clf, _Set(3, shape=(1, 5, 16, 16)), tmp_path / "cam3d.png", per_class=1)
    assert (tmp_path / "cam3d.png").is_file() and len(info["predicted"]) == 3


def test_cam_model_keeps_an_instance_level_features_wrapper():
    """CamModel deleted the encoder's instance attribute ``_features`` after each call, which
    removed any wrapper set on the instance before (a nested CamModel's, a user's hook)."""
    from medfm.evaluation.cam import CamModel

    torch.manual_seed(0)
    clf = ImageClassifier(create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                          task="binary-class").eval()
    enc = clf.encoder
    calls = []
    inner = enc._features

    def counting(t):
        calls.append(1)
        return inner(t)

    enc._features = counting
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        out = CamModel(clf)(x)
        assert torch.allclose(out, clf(x))
    assert vars(enc)["_features"] is counting and len(calls) == 2
    del enc._features
    with torch.no_grad():
        CamModel(clf)(x)
    assert "_features" not in vars(enc)  # no wrapper left behind either
