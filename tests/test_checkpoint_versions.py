"""A checkpoint records what wrote it: every ``config.json`` carries ``versions`` (medfm, numpy, Python, torch,
scikit-learn, scipy, transformers as installed, :func:`medfm.versions.versions`), the model card shows them, and
the training runners' ``results.json`` (segmentation, text-conditioned segmentation, fusion) record them as the
evaluation reports do. Why: the same CLIP pretraining recipe trained other weights on another install
(docs/ssl_results.md), and the training run did not say what was installed."""
import json
from pathlib import Path

import pytest
import torch

import medfm
from medfm.adapters.lora import LoraSettings, apply_lora, merge_adapter, save_adapter
from medfm.cards import build_card
from medfm.hub import CheckpointError, from_pretrained, model_config, save_pretrained
from medfm.versions import versions, versions_text
from tests.helpers.classifiers import tiny_classifier as _clf
from tests.helpers.runner_cases import RUNNERS




def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_a_saved_checkpoint_records_the_installed_versions_and_still_loads(tmp_path):
    model = _clf()
    cfg = _config(save_pretrained(model, tmp_path / "m"))
    assert cfg["versions"] == versions() and cfg["versions"]["torch"] and cfg["versions"]["transformers"]
    assert list(cfg)[:2] == ["medfm_version", "versions"] and cfg["medfm_version"] == medfm.__version__
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(from_pretrained(tmp_path / "m").eval()(x), model.eval()(x))


def test_extra_config_cannot_set_versions():
    with pytest.raises(CheckpointError, match=r"^extra_config cannot set 'versions': the model's own config.json"):
        model_config(_clf(), {"versions": {"torch": "0"}})


def test_an_adapter_and_its_merged_checkpoint_each_record_the_versions(tmp_path):
    base = save_pretrained(_clf(), tmp_path / "base")
    peft_model = apply_lora(from_pretrained(base), LoraSettings(rank=2, alpha=4))
    adapter = save_adapter(peft_model, tmp_path / "adapter", str(base))
    assert _config(adapter)["versions"] == versions()
    merged = merge_adapter(adapter, tmp_path / "merged")  # the adapter's versions are not kept as metadata
    assert _config(merged)["versions"] == versions()


def test_the_card_shows_the_versions_and_an_older_checkpoint_s_medfm_version(tmp_path):
    ckpt = save_pretrained(_clf(), tmp_path / "m")
    cfg = _config(ckpt)
    assert f"| versions | {versions_text(versions())} |" in build_card(cfg)
    assert f"scikit-learn {versions()['scikit-learn']}" in build_card(cfg)
    older = {k: v for k, v in cfg.items() if k != "versions"}  # written before versions were recorded
    assert f"| versions | medfm {medfm.__version__} |" in build_card(older)
    assert "| versions | not recorded |" in build_card({k: v for k, v in older.items() if k != "medfm_version"})


def _checkpoint_configs(output: Path):
    return sorted(p.parent for p in output.rglob("config.json") if (p.parent / "model.safetensors").is_file()
                  or (p.parent / "adapter_model.safetensors").is_file())


@pytest.mark.parametrize("name", ["segment_2d_chase", "segment_text", "fuse_classification", "fuse_segmentation",
                                  "finetune_full_augment"])
def test_a_training_run_records_the_versions_in_every_checkpoint_and_in_its_results(tmp_path, name):
    write_data, run, _, finals, _ = RUNNERS[name]
    write_data(tmp_path / "data")
    run(tmp_path / "out", tmp_path / "data", False)
    found = _checkpoint_configs(tmp_path / "out")
    assert {str(tmp_path / "out" / Path(f).parent) for f in finals} <= {str(p) for p in found}
    for folder in found:
        assert _config(folder)["versions"] == versions(), folder
    results = tmp_path / "out" / "results.json"
    if name.startswith(("segment", "fuse")):
        assert json.loads(results.read_text())["versions"] == versions()


def _edit_versions(folder: Path, **changes) -> None:
    cfg = _config(folder)
    if changes:
        cfg["versions"].update(changes)
    else:  # as an older medfm wrote it
        del cfg["versions"]
    (folder / "config.json").write_text(json.dumps(cfg))


def test_a_resume_under_other_versions_names_them_and_goes_on(tmp_path, caplog):
    write_data, run, *_ = RUNNERS["finetune_full_augment"]
    write_data(tmp_path / "data")
    run(tmp_path / "out", tmp_path / "data", False)
    state = tmp_path / "out" / "checkpoint"
    with caplog.at_level("WARNING", logger="medfm.training.loop"):
        run(tmp_path / "out", tmp_path / "data", True)  # the same install: nothing said
    assert "resuming from" not in caplog.text
    _edit_versions(state, torch="2.0.0", scipy="1.0.0")
    caplog.clear()
    with caplog.at_level("WARNING", logger="medfm.training.loop"):
        run(tmp_path / "out", tmp_path / "data", True)
    now = versions()
    assert (f"resuming from {state}, saved with torch 2.0.0, scipy 1.0.0; installed now: torch {now['torch']}, "
            f"scipy {now['scipy']}. The resumed run may not match an uninterrupted run bit for bit") in caplog.text
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()  # the run went on


def test_a_resume_of_a_state_saved_before_versions_were_recorded_says_nothing(tmp_path, caplog):
    write_data, run, *_ = RUNNERS["finetune_full_augment"]
    write_data(tmp_path / "data")
    run(tmp_path / "out", tmp_path / "data", False)
    _edit_versions(tmp_path / "out" / "checkpoint")  # no "versions" key, as an older medfm wrote
    with caplog.at_level("WARNING", logger="medfm.training.loop"):
        run(tmp_path / "out", tmp_path / "data", True)
    assert "resuming from" not in caplog.text


def test_version_changes_compares_what_both_record():
    from medfm.versions import version_changes

    now = versions()
    assert version_changes(now) == {} and version_changes(None) == {} and version_changes("2.14.1") == {}
    assert version_changes({**now, "torch": "1.0", "scipy": None, "other": "9"}) == {"torch": ("1.0", now["torch"])}
