"""Shared fixtures: tiny MedMNIST npz files in the official layout (any test may use them)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch
from medfm.data.medmnist_info import INFO


def fake_medmnist_arrays(flag: str, size: int = 28, counts=(6, 3, 4), seed: int = 0) -> Dict[str, np.ndarray]:
    """Random arrays shaped like the official ``<flag>[_<size>].npz`` (uint8 images and labels)."""
    info = INFO[flag]
    rng = np.random.default_rng(seed)
    is_3d = info["python_class"].endswith("3D")
    per_item = (size,) * 3 if is_3d else ((size, size) if info["n_channels"] == 1 else (size, size, 3))
    n_labels = len(info["label"])
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        images = rng.integers(0, 256, (n, *per_item), dtype=np.uint8)
        images.reshape(n, -1)[:, :2] = (0, 255)  # full range present
        if info["task"].startswith("multi-label"):
            labels = rng.integers(0, 2, (n, n_labels), dtype=np.uint8)
        else:
            labels = rng.integers(0, n_labels, (n, 1), dtype=np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return arrays


def write_medmnist_npz(root: Path, flag: str, size: int = 28, arrays=None, raw: bytes | None = None) -> Path:
    """Write ``<root>/medmnist/<flag>[_<size>].npz`` (the official file name and layout; the folder is made) from
    ``arrays`` (default: :func:`fake_medmnist_arrays` of ``flag`` and ``size``), or ``raw`` bytes instead of an npz.
    Returns the file's path. No checksum is recorded: pass ``verify_md5: False``, or use :func:`write_medmnist`."""
    folder = root / "medmnist"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez_compressed(path, **(arrays if arrays is not None else fake_medmnist_arrays(flag, size)))
    return path


@pytest.fixture
def write_medmnist(tmp_path: Path, monkeypatch) -> Callable[..., Path]:
    """Write ``<tmp>/medmnist/<flag>[_<size>].npz`` and point INFO's md5 at it.

    Call as ``write_medmnist(flag, size=28, arrays=None, raw=None)``; ``arrays`` replaces the
    generated ones, ``raw`` writes those bytes instead of an npz. Returns the data root.
    """

    def write(flag: str, size: int = 28, arrays=None, raw: bytes | None = None) -> Path:
        path = write_medmnist_npz(tmp_path, flag, size, arrays, raw)
        key = "MD5" if size == 28 else f"MD5_{size}"
        monkeypatch.setitem(INFO[flag], key, hashlib.md5(path.read_bytes()).hexdigest())
        return tmp_path

    return write


@pytest.fixture
def pneumonia_env(write_medmnist, monkeypatch) -> Path:
    """A tiny generated pneumoniamnist as ``$MEDFM_DATA`` (for CLI checks that run after the data loads)."""
    root = write_medmnist("pneumoniamnist")
    monkeypatch.setenv("MEDFM_DATA", str(root))
    return root


def assert_refuses(call: Callable[[Any], Any], value: Any, message: str) -> None:
    """``call(value)`` raises a ``ValueError`` (or a subclass) whose whole message is ``message``: a row of
    the ``(site, call, bad value, message)`` tables of the argument-check tests."""
    with pytest.raises(ValueError) as info:
        call(value)
    assert str(info.value) == message


def cli_error(capsys, argv) -> Tuple[int, str]:
    """(exit code, stderr) of ``medfm argv``; asserts stderr is one line without a traceback."""
    from medfm.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return code, err


@pytest.fixture
def medmnist_arrays() -> Callable[..., Dict[str, np.ndarray]]:
    """The :func:`fake_medmnist_arrays` generator (same seed -> same arrays as written files)."""
    return fake_medmnist_arrays


REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The real data folder ($MEDFM_DATA, else ../shared/data next to the repo), or None."""
    import os

    env = os.environ.get("MEDFM_DATA")
    for cand in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared" / "data"]:
        if (cand / "medmnist").is_dir():
            return cand
    return None


@pytest.fixture
def real_data_root() -> Path:
    """The real ../shared/data folder; skips the test with a reason when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip("real data not found: set MEDFM_DATA or provide ../shared/data next to the repo")
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Run tests single-threaded: tiny models gain nothing from threads, and on a shared
    2-core machine OpenMP spin-waiting made them several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def benchmark_script(name: str):
    """The module of ``benchmarks/<name>.py`` (scripts, not a package), imported from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_bert(path: Path, words, hidden: int = 32) -> Path:
    """A randomly initialised 2-layer BERT + WordPiece tokenizer over ``words``, saved in
    transformers layout (a local text model for tests that must not load real weights)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = TINY_BERT_SPECIAL + list(words)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(path / "vocab.txt")).save_pretrained(str(path))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64)).save_pretrained(str(path))
    return path


def write_deep_colour_tiff(path: Path, pixels: np.ndarray) -> Path:
    """Write ``pixels`` ``(H, W, 3 or 4)`` as a baseline uncompressed little-endian TIFF with 16 bits per channel: RGB,
    or RGBA (ExtraSamples 2, unassociated alpha). Pillow reads such files (as their high bytes) but cannot write them.
    The one writer of the tests of :func:`medfm.data.images.check_tiff` (data readers and pipelines)."""
    import struct

    h, w, c = pixels.shape
    data = pixels.astype("<u2").tobytes()
    # width, length, no compression, RGB, samples per pixel, rows per strip (+ extra samples for RGBA)
    short = [(256, w), (257, h), (259, 1), (262, 2), (277, c), (278, h)] + ([(338, 2)] if c == 4 else [])
    n = len(short) + 3
    bits_at = 8 + 2 + 12 * n + 4
    data_at = bits_at + 2 * c
    entries = [struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in short]
    entries += [struct.pack("<HHII", 258, 3, c, bits_at), struct.pack("<HHII", 273, 4, 1, data_at),
                struct.pack("<HHII", 279, 4, 1, len(data))]
    entries.sort()
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", n) + b"".join(entries)
                     + struct.pack("<I", 0) + struct.pack(f"<{c}H", *[16] * c) + data)
    return path


def write_class_folders(root: Path, classes, n: int, rng: np.random.Generator, size=(30, 40)) -> Path:
    """An image folder under ``root``: one sub-folder per class name, each of ``n`` random grey PNGs ``0.png``, ...
    of ``size`` (H, W), drawn from ``rng``. Returns ``root``."""
    from PIL import Image

    for cls in classes:
        (root / cls).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def write_grey_image(path: Path, value: int = 0, fmt: str | None = None) -> Path:
    """An 8 x 8 grey image of one ``value`` at ``path`` (its folder made), in ``fmt`` (default: from the suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path, format=fmt)
    return path


def load_image_folder(root: Path):
    """``(ImageFolderDataset(root), [messages of the UserWarnings it gave])``."""
    import warnings

    from medfm.data.imagefolder import ImageFolderDataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ImageFolderDataset(root)
    return ds, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


#: the advice :func:`medfm.pipelines.inputs.refuse_masked` gives for a numpy masked array (every site says it)
MASKED_HINT = ("a numpy masked array: its masked entries would be used with the values stored under the mask; pass "
               "array.filled(value), with the value they should take (e.g. 0), or array.data for the stored values")

#: the Tensor methods that read a value back to Python (on a GPU each one waits for the device: a sync)
READBACKS = ("__bool__", "__int__", "__float__", "item", "tolist")


@pytest.fixture
def readbacks(monkeypatch):
    """A list that grows by one name each time a tensor value is read back to Python (``bool(t)``, ``int(t)``,
    ``t.item()``, ...): a CPU test of how many device syncs a per-step function forces."""
    seen = []
    for name in READBACKS:
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            seen.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return seen


@pytest.fixture
def tmp_medfm_cache(monkeypatch, tmp_path):
    """Point medfm's on-disk caches ($XDG_CACHE_HOME/medfm) at a per-test folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def fit_losses(loss_fn, params, steps: int, lr: float, optimizer=torch.optim.Adam, after_step=None) -> List[float]:
    """Losses of ``steps`` optimizer steps on ``loss_fn(step) -> scalar loss`` over ``params``;
    ``after_step(step)`` runs after each update (e.g. an objective's ``on_step_end``)."""
    opt = optimizer(list(params), lr=lr)
    losses = []
    for step in range(steps):
        loss = loss_fn(step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(step)
        losses.append(loss.item())
    return losses


def train_objective_losses(model, batch, steps: int, seed_period: int | None = None, lr: float = 3e-3) -> List[float]:
    """Losses of ``steps`` AdamW steps of an objective on one fixed ``batch`` (its trainable
    parameters only), calling the objective's ``on_step_end`` hook when it has one, as the
    Trainer does. The view generator of step ``s`` is seeded with ``s`` (or ``s % seed_period``)."""
    return fit_losses(lambda step: model(batch, torch.Generator().manual_seed(step % seed_period if seed_period else step))["loss"],
                      [p for p in model.parameters() if p.requires_grad], steps, lr, torch.optim.AdamW,
                      getattr(model, "on_step_end", None))


#: modalities, image side and clinical features of :func:`tiny_fuser`
FUSION_MODS = ["pre", "flair", "clinical"]
FUSION_SIZE, FUSION_CLINICAL = 28, 3


def tiny_fuser(name: str):
    """A small missing-modality fuser (``medfm.registry.FUSERS``) over :data:`FUSION_MODS` at
    :data:`FUSION_SIZE` px, seeded, in eval mode (``fused_unet`` takes the two image modalities)."""
    from medfm.registry import FUSERS

    mods, side, feats = FUSION_MODS, FUSION_SIZE, FUSION_CLINICAL
    if name == "channelvit":
        args = dict(modalities=mods, img_size=side, patch_size=7, clinical_features=feats, dim=16, depth=1, heads=2)
    elif name == "fused_unet":
        args = dict(modalities=mods[:2], image_encoder={"name": "resnet_test"}, img_size=side,
                    decoder={"decoder_channels": [8, 8, 8, 8], "stem_channels": 8})
    else:
        args = dict(modalities=mods, image_encoder={"name": "resnet_test"}, img_size=side, clinical_features=feats, dim=16)
        if name == "3mat":
            args.update(heads=2, layers=1)
    torch.manual_seed(0)
    return FUSERS.build(name, **args).eval()


def assert_fuser_round_trip_exact(model, batch, directory: Path) -> None:
    """Save ``model`` with ``medfm.hub``, load it back, and check the class, the spec, every
    tensor of the state dict and the eval-mode ``logits`` on ``batch`` are identical."""
    from medfm.hub import from_pretrained, save_pretrained

    ref = model(batch)["logits"]
    save_pretrained(model, directory)
    loaded = from_pretrained(directory)
    assert type(loaded) is type(model) and loaded.medfm_spec == model.medfm_spec
    sd, ld = model.state_dict(), loaded.state_dict()
    assert sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k]) for k in sd)
    assert torch.equal(loaded.eval()(batch)["logits"], ref)


class ImageItems:
    """A map-style dataset of ``{"image": images[i]}`` over ``(N, C, H, W)`` images (zero-shot tests)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}


class TinyPairs:
    """``n`` seeded ``{"x": (4,) float, "y": 0/1}`` samples with ``get_batch``: the data of the tiny
    Trainer tests (resume, refused runs, training curves)."""

    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def get_batch(self, idx):
        return {"x": self.x[idx], "y": self.y[idx]}


def save_state_dict(model, directory):
    """A Trainer ``save_fn``: the model's state dict as ``directory/model.safetensors``."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))


def tiny_train_config(**kw):
    """The tiny Trainer tests' TrainConfig: 2 epochs of batch 4, fp32, a log row every step and a
    checkpoint every 3 steps (so a kill lands mid-epoch); ``kw`` overrides."""
    from medfm.training.loop import TrainConfig

    return TrainConfig(**{"epochs": 2, "batch_size": 4, "lr": 1e-2, "precision": "fp32", "log_every": 1,
                          "checkpoint_every": 3, **kw})


def tiny_net():
    """The tiny Trainer tests' model on :class:`TinyPairs`: a seeded ``4 -> 8 -> 2`` MLP with dropout (so a resume
    must restore the random state too)."""
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 2))


def noisy_step(model, batch, gen):
    """A Trainer ``step_fn`` for :func:`tiny_net`: cross-entropy on the inputs plus noise drawn from ``gen``."""
    x = batch["x"] + 0.1 * torch.randn(batch["x"].shape, generator=gen).to(batch["x"].device)
    return {"loss": torch.nn.functional.cross_entropy(model(x), batch["y"])}


def logged_rows(path: Path) -> List[dict]:
    """The rows of a ``metrics.jsonl`` without their wall-clock keys (``time``, ``img_per_s``): what two runs that
    should match must log alike."""
    import json

    return [{k: v for k, v in json.loads(ln).items() if k not in ("time", "img_per_s")}
            for ln in path.read_text().splitlines()]


class Killed(Exception):
    """Stands in for SIGKILL right after a mid-epoch checkpoint (disk state as after a real kill)."""


def kill_after_first_mid_epoch_checkpoint(monkeypatch, run_name=None):
    """Make :meth:`Trainer._save` raise :class:`Killed` after its first mid-epoch checkpoint (of the
    Trainer whose output folder is named ``run_name``, when given); returns the undo function."""
    from medfm.training.loop import Trainer

    real = Trainer._save

    def dying(self, counters):
        real(self, counters)
        if counters["step_in_epoch"] and run_name in (None, self.output.name):
            raise Killed

    monkeypatch.setattr(Trainer, "_save", dying)
    return lambda: monkeypatch.setattr(Trainer, "_save", real)


def pneumonia_classifier(seed: int = 0):
    """A random-init pneumoniamnist classifier seeded with ``seed``: ``resnet_test`` (1 channel, 28 px), binary-class,
    labels normal / pneumonia (as ``dataset_info("pneumoniamnist")``). The tests' checkpoint: save it with
    ``medfm.hub.save_pretrained``."""
    import medfm
    from medfm.adapters.classification import ImageClassifier

    torch.manual_seed(seed)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    return ImageClassifier(enc, 2, "binary-class", ["normal", "pneumonia"])


@pytest.fixture(scope="module")
def pneumonia_pipeline():
    """An ``image-classification`` pipeline over :func:`pneumonia_classifier`: for the pipelines' input handling,
    not their predictions."""
    from medfm.pipelines.classification import ImageClassificationPipeline

    return ImageClassificationPipeline(pneumonia_classifier())


@pytest.fixture(scope="module")
def vqa_model(tmp_path_factory):
    """A tiny random-init :class:`medfm.adapters.vqa.VQAModel` (``resnet_test``, 1 channel, 28 px; a
    tiny BERT knowing "is there a mass fracture ?"; answers yes / no / axial / left): for the VQA
    pipeline's input handling, not its predictions."""
    import medfm
    from medfm.adapters.vqa import VQAModel

    bert = save_tiny_bert(tmp_path_factory.mktemp("bert"), ["is", "there", "a", "mass", "fracture", "?"])
    torch.manual_seed(0)
    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    answers = ["yes", "no", "axial", "left"]
    return VQAModel(enc, answers, 32, closed_answers=["yes", "no"], open_answers=answers[2:],
                    text_encoder={"name": "hf", "model_name_or_path": str(bert), "max_length": 8},
                    fusion="cross_attention", dim=16, heads=2, layers=1, dropout=0.0).eval()


@pytest.fixture(scope="module")
def lgg(tmp_path_factory) -> Path:
    """A generated TCGA-LGG data root (``tests.helpers.lgg_fusion.write_fake_lgg``, 4 slices per patient: 2 training
    patients, 8 slices; 'pre' is in the 4 slices of the first one), one per test module: the ``medfm fuse`` tests'."""
    from tests.helpers.lgg_fusion import write_fake_lgg

    return write_fake_lgg(tmp_path_factory.mktemp("data"), slices=4)


@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint folder as the command line's early checks see one (only the ``config.json`` marker is
    looked at). Test modules that need a real checkpoint define their own ``ckpt``, which takes precedence."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)
