"""Checkpoint edge cases found in the hub audit: malformed config.json, sharded weights, file paths,
hub id syntax, tied weights, non-JSON config values, atomic saves and what ``push`` refuses.

Nothing here reaches the network: the hub client is replaced by fakes.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import medfm
from medfm.adapters.classification import ImageClassifier
from medfm.hub import CheckpointError, from_pretrained, resolve_checkpoint, save_pretrained
from medfm.hub_push import push_selection, push_to_hub
from medfm.registry import ADAPTERS


def _clf(seed=0):
    torch.manual_seed(seed)
    return ImageClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), num_classes=2,
                           task="binary-class").eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_pretrained(_clf(), tmp_path_factory.mktemp("hub") / "ckpt")


def _copy(ckpt, tmp_path, config=None):
    d = tmp_path / "copy"
    shutil.copytree(ckpt, d)
    if config is not None:
        (d / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return d


def _with(ckpt, **changes):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(changes)
    return {k: v for k, v in cfg.items() if v != "DROP"}


@pytest.mark.parametrize("config, match", [
    ("null", "holds a JSON null, not an object"),
    ("[1, 2]", "holds a JSON array, not an object"),
    ({"kind": ["adapter"]}, "'kind' must be a non-empty string"),
    ({"name": 5}, "'name' must be a non-empty string"),
    ({"encoder": "resnet_test"}, "'encoder' must be an object"),
    ({"encoder": {"in_chans": 1, "img_size": 28}}, "'encoder' must name the encoder"),
    ({"encoder": {}}, "does not describe a model.*missing 1 required positional argument: 'encoder'"),
    ({"args": None}, "'args' must be an object"),
    ({"args": "DROP"}, "does not describe a model.*missing 1 required positional argument: 'num_classes'"),
    ({"args": {"num_classes": "two", "task": "binary-class"}}, "does not describe a model.*num_classes must be an integer"),
    ({"name": "clasification"}, "does not describe a model.*did you mean 'classification'"),
    ({"encoder": {"name": "resnet_test", "in_chans": 1, "img_size": 28, "depthh": 2}},
     "does not describe a model.*unexpected keyword argument 'depthh'"),
])
def test_malformed_config_json_gives_one_clear_checkpoint_error(ckpt, tmp_path, config, match):
    d = _copy(ckpt, tmp_path, config if isinstance(config, str) else _with(ckpt, **config))
    with pytest.raises(CheckpointError, match=match) as err:
        from_pretrained(d)
    assert "\n" not in str(err.value) and str(d) in str(err.value)


def test_sharded_weights_and_file_paths_are_named(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path)
    (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    with pytest.raises(CheckpointError, match="sharded weights .model.safetensors.index.json."):
        from_pretrained(d)
    with pytest.raises(CheckpointError, match=f"is a file; .* pass '{ckpt}'"):
        from_pretrained(ckpt / "config.json")


def test_a_run_folder_names_its_checkpoint_subfolders(ckpt, tmp_path):
    """``from_pretrained("runs/x")`` on a training run's folder said only "config.json is missing";
    it now names the subfolders (``model/``, ``checkpoint/``) that hold a checkpoint."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    (run / "overlays").mkdir()  # a subfolder without config.json is not suggested
    with pytest.raises(CheckpointError, match=r"config\.json is missing$"):  # nothing to suggest yet
        from_pretrained(run)
    shutil.copytree(ckpt, run / "model")
    with pytest.raises(CheckpointError, match=rf"config\.json is missing; it holds a checkpoint in a subfolder: pass "
                                              rf"'{run / 'model'}'$"):
        from_pretrained(run)
    shutil.copytree(ckpt, run / "checkpoint")
    with pytest.raises(CheckpointError, match=rf"is not a medfm checkpoint: config\.json is missing; it holds "
                                              rf"checkpoints in subfolders: pass '{run / 'checkpoint'}' or "
                                              rf"'{run / 'model'}'$") as err:
        from_pretrained(str(run))
    assert "\n" not in str(err.value)
    assert from_pretrained(run / "model").num_classes == 2  # the suggestion loads


def test_bad_hub_ids_are_refused_before_the_hub_is_asked(monkeypatch):
    import huggingface_hub

    calls = []

    def offline(repo_id, revision=None, **kw):
        calls.append((repo_id, revision))
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    for ident in ("hf-hub:", "hf-hub:a/b/c", "hf-hub:org/na me", "hf-hub:org/name@"):
        with pytest.raises(CheckpointError, match="bad hub id"):
            resolve_checkpoint(ident)
    assert calls == []
    # the offline hint fetches the revision asked for (it named the default branch's command)
    with pytest.raises(CheckpointError, match="could not fetch 'hf-hub:org/name@v1'.*"
                                              "`hf download org/name --revision v1 --local-dir DIR`"):
        resolve_checkpoint("hf-hub:org/name@v1")
    assert calls == [("org/name", "v1")]


class _TiedClassifier(ImageClassifier):
    """A classifier whose auxiliary head shares the task head's weight (tied parameters)."""

    def __init__(self, encoder, num_classes):
        super().__init__(encoder, num_classes)
        self.aux_head = nn.Linear(encoder.num_features, num_classes, bias=False)
        self.aux_head.weight = self.task_head.weight
        self.medfm_spec = {"kind": "adapter", "name": "tied_test", "args": {"num_classes": num_classes}}


def test_tied_weights_save_and_reload_tied(tmp_path, monkeypatch):
    monkeypatch.setitem(ADAPTERS._entries, "tied_test", _TiedClassifier)
    monkeypatch.setitem(ADAPTERS._tags, "tied_test", {})
    torch.manual_seed(0)
    model = _TiedClassifier(medfm.create_encoder("resnet_test", in_chans=1, img_size=28), 2).eval()
    with torch.no_grad():
        model.task_head.weight.add_(1.0)
    again = from_pretrained(save_pretrained(model, tmp_path / "tied"))
    assert again.aux_head.weight is again.task_head.weight
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_config_values_are_saved_as_json_or_refused(tmp_path):
    model = _clf()
    model.medfm_spec["args"]["num_classes"] = np.int64(2)  # e.g. labels.max() + 1
    model.medfm_spec["args"]["label_names"] = ("no", "yes")
    cfg = json.loads((save_pretrained(model, tmp_path / "np") / "config.json").read_text())
    assert cfg["args"]["num_classes"] == 2 and cfg["args"]["label_names"] == ["no", "yes"]
    assert from_pretrained(tmp_path / "np").label_names == ["no", "yes"]
    model.medfm_spec["args"]["dropout"] = torch.tensor(0.1)
    with pytest.raises(CheckpointError, match="cannot save the config .* as JSON: .*Tensor"):
        save_pretrained(model, tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["np"]  # no folder, no temp dir left


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch

    path = save_pretrained(_clf(0), tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    real = safetensors.torch.save_file

    def half_written(state, file, metadata=None):
        real(state, file, metadata=metadata)
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    with pytest.raises(OSError, match="No space"):
        save_pretrained(_clf(1), path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


class _FakeApi:
    calls = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, allow_patterns=None, ignore_patterns=None):
        from pathlib import Path

        from huggingface_hub.utils import filter_repo_objects

        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", repo_id, list(filter_repo_objects(files, allow_patterns=allow_patterns,
                                                                                 ignore_patterns=ignore_patterns))))


def test_push_uploads_the_folder_and_refuses_what_nobody_could_load(ckpt, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    (ckpt / ".README.md.tmp-0a1b2c").write_text("half")  # leftovers of an interrupted atomic write
    (ckpt / ".eval.tmp-3d4e").mkdir()
    (ckpt / ".eval.tmp-3d4e" / "predictions.npz").write_bytes(b"x")
    assert push_to_hub(ckpt, "hf-hub:me/model") == "https://huggingface.co/me/model"  # the prefix is dropped
    assert _FakeApi.calls == [("create_repo", "me/model"),
                              ("upload_folder", "me/model", ["README.md", "config.json", "model.safetensors"])]
    # what a run leaves in a checkpoint folder stays local unless asked for: per-case predictions
    # (labels of a possibly private test set), optimizer state, plots
    (ckpt / "eval-pneumoniamnist-test").mkdir()
    (ckpt / "eval-pneumoniamnist-test" / "predictions.npz").write_bytes(b"labels")
    (ckpt / "eval-pneumoniamnist-test" / "results.json").write_text("{}")
    (ckpt / "training_state.safetensors").write_bytes(b"adam")
    (ckpt / "eval-pneumoniamnist-test" / ".results.json.tmp-9").write_text("half")
    _FakeApi.calls = []
    push_to_hub(ckpt, "me/model")
    assert _FakeApi.calls[1][2] == ["README.md", "config.json", "model.safetensors"]
    assert push_selection(ckpt)[1] == [".README.md.tmp-0a1b2c", ".eval.tmp-3d4e/predictions.npz",
                                       "eval-pneumoniamnist-test/.results.json.tmp-9",
                                       "eval-pneumoniamnist-test/predictions.npz",
                                       "eval-pneumoniamnist-test/results.json", "training_state.safetensors"]
    _FakeApi.calls = []
    push_to_hub(ckpt, "me/model", include=["eval-*/results.json", "eval-*/.results.json*"])
    assert _FakeApi.calls[1][2] == ["README.md", "config.json", "eval-pneumoniamnist-test/results.json",
                                    "model.safetensors"]
    for bad in ("", "../x", "/etc/*"):
        with pytest.raises(CheckpointError, match="bad include pattern"):
            push_to_hub(ckpt, "me/model", include=[bad])
    shutil.rmtree(ckpt / "eval-pneumoniamnist-test")
    (ckpt / "training_state.safetensors").unlink()
    shutil.rmtree(ckpt / ".eval.tmp-3d4e")
    (ckpt / ".README.md.tmp-0a1b2c").unlink()
    _FakeApi.calls = []
    with pytest.raises(CheckpointError, match="bad hub repo id 'a/b/c'"):
        push_to_hub(ckpt, "a/b/c")
    adapter = _copy(ckpt, tmp_path, _with(ckpt, base_checkpoint=str(tmp_path / "base"), adapter="lora"))
    (adapter / "adapter_config.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in adapter.iterdir()}
    with pytest.raises(CheckpointError, match="LoRA adapter whose base checkpoint is the local path.*medfm merge"):
        push_to_hub(adapter, "me/adapter")
    assert _FakeApi.calls == [] and {p.name: p.read_bytes() for p in adapter.iterdir()} == before

    class Down(_FakeApi):
        def create_repo(self, *a, **k):
            raise ConnectionError("Name or service not known\nretry later")

    monkeypatch.setattr(huggingface_hub, "HfApi", Down)
    with pytest.raises(CheckpointError, match=r"could not push to the hub repo 'me/model' \(ConnectionError: Name or "
                                              r"service not known\)$"):
        push_to_hub(ckpt, "me/model")


def test_lora_adapter_with_an_unbuildable_config_names_its_file(tmp_path):
    """load_adapter built the model without saying which config.json could not be built."""
    from medfm.hub import CheckpointError, from_pretrained

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "config.json").write_text(json.dumps({
        "kind": "adapter", "name": "clasification", "encoder": {"name": "resnet_test", "in_chans": 1, "img_size": 28}}))
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(CheckpointError) as err:
        from_pretrained(adapter)
    assert str(adapter / "config.json") in str(err.value) and "did you mean 'classification'" in str(err.value)


def test_weights_that_would_lose_precision_are_refused_and_lossless_ones_load(ckpt, tmp_path):
    """A float64 model.safetensors used to be rounded into the fp32 model silently; bf16 weights
    widen to fp32 exactly and still load."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    wide = _copy(ckpt, tmp_path)
    save_file({k: (v.double() if v.is_floating_point() else v) for k, v in state.items()},
              str(wide / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"would lose precision.*float64 into torch.float32"):
        from_pretrained(wide)
    shutil.rmtree(wide)
    narrow = _copy(ckpt, tmp_path)
    half = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in state.items()}
    save_file(half, str(narrow / "model.safetensors"))
    model = from_pretrained(narrow)
    for k, v in model.state_dict().items():
        assert v.dtype == state[k].dtype and torch.equal(v, half[k].to(v.dtype)), k


def test_push_command_says_what_it_uploaded_and_what_stayed_local(ckpt, monkeypatch, capsys):
    import huggingface_hub

    from medfm.cli import main

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    (ckpt / "zeroshot-pneumoniamnist-test").mkdir()
    (ckpt / "zeroshot-pneumoniamnist-test" / "predictions.npz").write_bytes(b"labels")
    assert main(["push", str(ckpt), "me/model"]) in (0, None)
    out = capsys.readouterr().out.splitlines()
    assert out == ["uploaded 3 files: README.md, config.json, model.safetensors",
                   "kept local 1 files (add --include GLOB to upload them): zeroshot-pneumoniamnist-test/predictions.npz",
                   "https://huggingface.co/me/model"]
    assert main(["push", str(ckpt), "me/model", "--include", "zeroshot-*/*.npz"]) in (0, None)
    assert capsys.readouterr().out.splitlines()[0].endswith("zeroshot-pneumoniamnist-test/predictions.npz")


class _FakeHub(_FakeApi):
    """The hub's visibility rules as huggingface_hub 2.4 answers them: ``create_repo(exist_ok=True)`` ignores
    ``private`` for an existing repo; a new repo with ``private=None`` gets the account's default."""
    repos, default_private, refuse_settings = {}, False, False

    def create_repo(self, repo_id, *, private=None, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private))
        self.repos.setdefault(repo_id, self.default_private if private is None else private)
        return f"https://huggingface.co/{repo_id}"

    def repo_info(self, repo_id):
        from types import SimpleNamespace

        return SimpleNamespace(private=self.repos[repo_id])

    def update_repo_settings(self, repo_id, *, private=None):
        if self.refuse_settings:
            raise PermissionError("403 Forbidden: you are not an admin of this repo\nrequest id: 1")
        self.calls.append(("update_repo_settings", repo_id, private))
        self.repos[repo_id] = private

    def upload_folder(self, folder_path, repo_id, allow_patterns=None, ignore_patterns=None):
        self.calls.append(("upload_folder", repo_id, "private" if self.repos[repo_id] else "public"))


def test_push_private_makes_an_existing_public_repo_private_and_never_the_reverse(ckpt, monkeypatch, caplog):
    """create_repo(private=True, exist_ok=True) left an existing public repo public, and the files went up
    to it; create_repo(private=False) made a new repo public against an organization's private default."""
    import huggingface_hub

    from medfm.cli import main

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeHub)
    _FakeHub.calls, _FakeHub.repos = [], {"me/public": False, "me/secret": True}
    with caplog.at_level("WARNING", logger="medfm.hub"):
        assert main(["push", str(ckpt), "me/public", "--private"]) in (0, None)
    assert _FakeHub.calls == [("create_repo", "me/public", True), ("update_repo_settings", "me/public", True),
                              ("upload_folder", "me/public", "private")]  # private before anything went up
    assert "made the existing hub repo 'me/public' private" in caplog.text
    _FakeHub.calls = []
    push_to_hub(ckpt, "me/secret")  # private=False does not mean "make it public"
    push_to_hub(ckpt, "me/secret", private=True)
    assert _FakeHub.calls == [("create_repo", "me/secret", None), ("upload_folder", "me/secret", "private"),
                              ("create_repo", "me/secret", True), ("upload_folder", "me/secret", "private")]
    _FakeHub.calls = []
    push_to_hub(ckpt, "me/new", private=True)
    push_to_hub(ckpt, "me/open")
    monkeypatch.setattr(_FakeHub, "default_private", True)  # an organization whose repos are private by default
    push_to_hub(ckpt, "org/new")
    assert [c for c in _FakeHub.calls if c[0] == "upload_folder"] == [
        ("upload_folder", "me/new", "private"), ("upload_folder", "me/open", "public"),
        ("upload_folder", "org/new", "private")]
    monkeypatch.setattr(_FakeHub, "refuse_settings", True)
    _FakeHub.calls, _FakeHub.repos = [], {"org/shared": False}
    with pytest.raises(CheckpointError, match=r"^could not make the existing public hub repo 'org/shared' private, so "
                                              r"nothing was uploaded \(PermissionError: 403 Forbidden: you are not an "
                                              r"admin of this repo\)$"):
        push_to_hub(ckpt, "org/shared", private=True)
    assert _FakeHub.calls == [("create_repo", "org/shared", True)] and _FakeHub.repos == {"org/shared": False}
