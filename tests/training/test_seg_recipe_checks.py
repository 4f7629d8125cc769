"""``medfm segment <recipe>`` refuses bad settings before any data is read, in one line naming the recipe
file and section, for the keys that used to be checked late, with a raw message, or not at all.

Before (each row notes it): a bad ``text_encoder`` of a text-conditioned recipe was found when the text
model was built, after the data, without a location; ``decoder`` sizes reached torch (0 channels built a
decoder and training started, ``-1`` crashed with a traceback, ``1.5`` said "out_channels must be divisible
by groups"); ``data.context_slices`` wider than the volumes trained on stacks of copied edge slices; the
"one channel count" rule of text-conditioned tasks had no location; ``lora.target_modules`` matching no
layer failed after the data; a blank ``query`` failed after training and the first test evaluation, when it
was embedded (an empty one skipped the referring evaluation silently).
"""
from __future__ import annotations

import re

import pytest
import torch
import yaml

from medfm.config import from_dict
from tests.conftest import REPO_ROOT, cli_error

CHASE = "finetune/seg_unet_chase_db1.yaml"
HIP25 = "finetune/seg_unet25d_hippocampus.yaml"
TEXT = "finetune/seg_text_chase_lgg.yaml"


def _set(recipe: dict, key: str, value) -> None:
    """Set dotted ``key`` (``tasks.1.data.patch``) of a recipe mapping."""
    *parents, last = key.split(".")
    for part in parents:
        recipe = recipe[int(part)] if isinstance(recipe, list) else recipe.setdefault(part, {})
    recipe[last] = value


@pytest.mark.parametrize("recipe, change, message", [
    # text_encoder: after the data, no location
    (TEXT, {"text_encoder": {"name": "minilm", "poolr": "mean"}},
     "r.yaml.text_encoder: text encoder 'minilm' got an unexpected keyword argument 'poolr'; did you mean 'pooler'?"),
    (TEXT, {"text_encoder": {"name": "minilm", "pooler": "maen"}}, "r.yaml.text_encoder: unknown pooler 'maen'; did you mean 'mean'?"),
    (TEXT, {"text_encoder": {"name": "hf", "model_name_or_path": "/nonexistent/model"}},
     "r.yaml.text_encoder: no text model directory at '/nonexistent/model'"),
    (TEXT, {"text_encoder": {"name": "minilm", "max_length": 0}}, "r.yaml.text_encoder: max_length must be an integer >= 2, got 0"),
    (TEXT, {"text_encoder": {"name": "minlm"}}, "r.yaml.text_encoder: unknown text encoder 'minlm'; did you mean 'minilm'?"),
    # taken as true / a TypeError traceback
    (TEXT, {"text_encoder": {"name": "minilm", "frozen": "no"}}, "r.yaml.text_encoder: frozen must be true or false, got 'no' (str)"),
    (TEXT, {"text_encoder": {"name": "hf"}}, "r.yaml.text_encoder: text encoder 'hf' needs model_name_or_path"),
    (TEXT, {"text_encoder": {"name": "minilm", "frozen": False}},  # silently ignored: prompts embedded once
     "r.yaml.text_encoder: frozen: false is not supported here: the text encoder stays frozen (its embeddings are "
     "computed once and never trained); remove it"),
    # decoder sizes: trained to nothing (0), a traceback (-1), torch's words (1.5, "16")
    (CHASE, {"decoder.stem_channels": 0}, "r.yaml.decoder: stem_channels must be an integer >= 1, got 0"),
    (CHASE, {"decoder.stem_channels": -1}, "r.yaml.decoder: stem_channels must be an integer >= 1, got -1"),
    (CHASE, {"decoder.stem_channels": "16"}, "r.yaml.decoder: stem_channels must be an integer >= 1, got '16' (str)"),
    (TEXT, {"decoder.stem_channels": 0}, "r.yaml.decoder: stem_channels must be an integer >= 1, got 0"),
    (CHASE, {"decoder.decoder_channels": [0, 8, 8, 8, 8]}, "r.yaml.decoder: decoder_channels must be a list of "
     "integers >= 1 (one per pyramid level, finest first), got [0, 8, 8, 8, 8]"),
    (CHASE, {"decoder.decoder_channels": [8.5, 8, 8, 8, 8]}, "r.yaml.decoder: decoder_channels must be a list of "
     "integers >= 1 (one per pyramid level, finest first), got [8.5, 8, 8, 8, 8]"),
    (CHASE, {"decoder.input_skip": "yes"}, "r.yaml.decoder: input_skip must be true or false, got 'yes' (str)"),
    # 2.5D windows wider than the thinnest volume (31 x 40 x 24): accepted, stacks of copied edge slices
    (HIP25, {"data.context_slices": 50}, "r.yaml: data.context_slices must be an integer in [0, 15] (the 2k + 1 "
     "slices must fit in the thinnest msd_hippocampus volume: 31 slices along data.slice_axis 0), got 50"),
    (HIP25, {"data.slice_axis": 2, "data.context_slices": 12}, "r.yaml: data.context_slices must be an integer in "
     "[0, 11] (the 2k + 1 slices must fit in the thinnest msd_hippocampus volume: 24 slices along data.slice_axis 2), got 12"),
    (CHASE, {"data.flip_axes": [0, 0]}, "r.yaml: data.flip_axes lists an axis twice (each listed axis is flipped "
     "with p = 0.5), got [0, 0]"),
    # LoRA targets: after the data, no location
    (CHASE, {"mode": "lora", "lora.target_modules": "nomatch_xyz"},
     "r.yaml.lora: LoRA target pattern 'nomatch_xyz' matches no Linear/Conv2d/Conv3d layer of encoder 'resnet18'"),
    (TEXT, {"mode": "lora", "lora.target_modules": "nomatch_xyz"},
     "r.yaml.lora: LoRA target pattern 'nomatch_xyz' matches no Linear/Conv2d/Conv3d layer of encoder 'resnet18'"),
    # text-conditioned tasks: no location; the query after training; the others accepted
    (TEXT, {"tasks.1.data": {"dataset": "msd_hippocampus", "patch": [128, 128], "context_slices": 2}},
     "r.yaml: all tasks need one input channel count (one encoder reads every task's images), "
     "got tasks[0] chase_db1: 3, tasks[1] msd_hippocampus: 5"),
    (TEXT, {"tasks.0.query": " "}, "r.yaml: tasks[0]: query must be a non-empty text, or left out for none, got ' ' (str)"),
    (TEXT, {"tasks.0.name": ""}, "r.yaml: tasks[0]: name must be a non-empty string (the target's id), got '' (str)"),
    (TEXT, {"tasks.1.name": "a/b"}, "r.yaml: tasks[1]: name must be a plain folder name (the results go to "
     "tasks/<name>/), got 'a/b'"),
    (TEXT, {"tasks.0.target": ""}, "r.yaml: tasks[0]: target must be a non-empty string (a prompt part), got '' (str)"),
    (TEXT, {"eval.roi_size": [64, 64, 64]}, "r.yaml: eval.roi_size has 3 values for 2-D text-conditioned windows, "
     "got [64, 64, 64]"),  # was ignored
])
def test_bad_segment_recipe_value_is_named_before_any_data_is_read(tmp_path, monkeypatch, capsys, recipe, change,
                                                                   message):
    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no_data"))  # a value that passed would fail on the data
    r = yaml.safe_load((REPO_ROOT / recipe).read_text())
    for key, value in change.items():
        _set(r, key, value)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(r))
    code, err = cli_error(capsys, ["segment", tmp_path / "r.yaml", "--output", tmp_path / "out"])
    assert code == 2 and err.startswith(f"medfm: error: {message}"), err
    assert err.count("r.yaml") == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "finetune").glob("seg_*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_segment_recipe_passes_its_checks(path):
    """The new rules refuse none of the shipped recipes (their models are unchanged: same weights at seed 0)."""
    from medfm.config import load_yaml
    from medfm.training.seg_tasks import build_task
    from medfm.training.segmentation import SegmentationRecipe, check_segmenter_args
    from medfm.training.text_segmentation import TextSegRecipe, check_text_segmenter_args

    data = load_yaml(path)
    if "tasks" in data:
        recipe = from_dict(TextSegRecipe, data, where=path.name)
        check_text_segmenter_args(recipe, recipe.tasks[0].data.in_chans)
    else:
        recipe = from_dict(SegmentationRecipe, data, where=path.name)
        check_segmenter_args(recipe, build_task(recipe.data))


@pytest.mark.parametrize("options, message", [
    ({"stem_channels": 0}, "stem_channels must be an integer >= 1, got 0"),
    ({"stem_channels": True}, "stem_channels must be an integer >= 1, got True (bool)"),
    ({"decoder_channels": "x"}, "decoder_channels must be a list of integers >= 1"),  # was "needs 5 values, got 1"
    ({"decoder_channels": []}, "decoder_channels must be a list of integers >= 1"),
    ({"input_skip": 1}, "input_skip must be true or false, got 1"),
    ({"norm": "btach"}, "unknown norm 'btach'; did you mean 'batch'?"),
])
def test_decoder_option_values(options, message):
    from medfm.adapters.segmentation import UNetDecoder, check_decoder_options

    with pytest.raises(ValueError, match="^" + re.escape(message)):
        check_decoder_options(options)
    with pytest.raises(ValueError, match="^" + re.escape(message)):  # the decoder built directly checks the same
        UNetDecoder([8, 16], [(8, 8), (4, 4)], 16, **options)
    assert check_decoder_options({"stem_channels": 16, "decoder_channels": [8, 16], "input_skip": False}) == {
        "stem_channels": 16, "decoder_channels": [8, 16], "input_skip": False}


@pytest.mark.parametrize("spec, message", [
    ({"name": "minilm", "poolr": "mean"}, "text encoder 'minilm' got an unexpected keyword argument 'poolr'; did you mean 'pooler'?"),
    ({"name": "minilm", "pooler": "maen"}, "unknown pooler 'maen'; did you mean 'mean'?"),
    ({"name": "minilm", "max_length": 128.0}, "max_length must be an integer >= 2, got 128.0"),
    ({"name": "minilm", "frozen": "no"}, "frozen must be true or false, got 'no' (str)"),
    ({"name": "hf"}, "text encoder 'hf' needs model_name_or_path"),
    ({"name": "hf", "model_name_or_path": " "}, "no text model given: pass model_name_or_path (a local directory or a hub id)"),
    ({"name": "minlm"}, "unknown text encoder 'minlm'; did you mean 'minilm'?"),
])
def test_text_encoder_spec_is_checked_without_loading_a_model(monkeypatch, spec, message):
    import medfm.text.encoders as encoders

    monkeypatch.setattr(encoders, "resolve_text_model", lambda *a: pytest.fail("a model was looked up"))
    with pytest.raises(encoders.TextEncoderError, match="^" + re.escape(message)):
        encoders.check_text_encoder_spec(spec)


def test_good_text_encoder_specs_pass_unchanged():
    from medfm.text.encoders import check_text_encoder_spec

    assert check_text_encoder_spec(None) == check_text_encoder_spec({}) == {"name": "minilm"}
    spec = {"name": "hf", "model_name_or_path": "org/model", "pooler": "last", "max_length": 64, "frozen": False}
    assert check_text_encoder_spec(spec) == spec


def _text_recipe(**changes):
    from medfm.training.text_segmentation import TextSegRecipe

    tasks = [{"name": "vessel", "data": {"dataset": "chase_db1", "patch": [32, 32]}},
             {"name": "lesion", "data": {"dataset": "lgg_flair", "patch": [32, 32]}}]
    return from_dict(TextSegRecipe, {"tasks": tasks, "encoder": {"name": "resnet_test"}, **changes})


def test_text_recipe_eval_roi_size_is_the_recorded_window():
    """``eval.roi_size`` was ignored by the text-conditioned runner (the window was always ``data.patch``)."""
    from medfm.training.text_segmentation import text_segmenter_args

    args = text_segmenter_args(_text_recipe(eval={"roi_size": [48, 48]}))
    assert args["inference"]["roi_size"] == [48, 48]
    assert {t["roi_size"][0] for t in args["target_inference"].values()} == {48}
    assert text_segmenter_args(_text_recipe())["inference"]["roi_size"] == [32, 32]  # default: data.patch


class _Recorder(torch.nn.Module):
    """Stands in for the text-conditioned model in :func:`text_seg_step`: zero logits, keeps the targets."""

    domain_norm = False

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, images, domain=None):
        return images[:, :2] * 0 + self.w

    def loss(self, logits, masks, known=None, weights=None):
        self.masks = masks
        return logits.sum()


def test_text_recipe_foreground_p_centres_crops_on_the_target():
    """A task's ``data.foreground_p`` was ignored by the text-conditioned step (uniform crops only)."""
    from medfm.training.text_segmentation import text_seg_step

    recipe = _text_recipe()
    recipe.tasks[0].data.foreground_p = 1.0
    mask = torch.zeros(8, 128, 128, dtype=torch.long)
    mask[:, 100:102, 5:7] = 1  # a small structure in a large image
    batch = {"image_0": torch.rand(8, 3, 128, 128), "mask_0": mask, "valid_0": torch.tensor([[128, 128]] * 8)}
    model = _Recorder()
    text_seg_step(recipe)(model, batch, torch.Generator().manual_seed(0))
    assert model.masks.shape == (8, 2, 32, 32)
    assert bool((model.masks[:, 0].flatten(1).sum(1) > 0).all()), "every crop holds the vessel target"


def test_text_task_checks_built_in_python():
    """The rules hold for a recipe made in Python too (no file, so the message names no location)."""
    from medfm.training.seg_tasks import SegDataConfig
    from medfm.training.text_segmentation import TextSegRecipe, TextTaskConfig

    hip = SegDataConfig(dataset="msd_hippocampus", patch=[32, 32, 32])
    with pytest.raises(ValueError, match=r"^tasks\[0\] \(msd_hippocampus\): a text-conditioned recipe trains on 2D"):
        TextSegRecipe(tasks=[TextTaskConfig(data=hip)])
    with pytest.raises(ValueError, match="^query must be a non-empty text"):
        TextTaskConfig(query="")
    with pytest.raises(ValueError, match=r"^name must be a plain folder name .*got '\.\.'"):
        TextTaskConfig(name="..")


def test_2_5d_window_bound_follows_the_slice_axis():
    from medfm.training.seg_tasks import SegDataConfig

    assert SegDataConfig(dataset="msd_hippocampus", context_slices=15, patch=[32, 32]).in_chans == 31
    assert SegDataConfig(dataset="msd_hippocampus", context_slices=19, slice_axis=1, patch=[32, 32]).in_chans == 39
    with pytest.raises(ValueError, match=r"in \[0, 19\] .* 40 slices along data.slice_axis 1\), got 20$"):
        SegDataConfig(dataset="msd_hippocampus", context_slices=20, slice_axis=1, patch=[32, 32])
