"""What the runners write, and when:

- ``medfm segment`` (U-Net and text-conditioned) and ``medfm fuse`` (classification and segmentation) wrote
  ``config.yaml`` (and ``init.json``) before the fit, so that a resume refused by the trainer's counter check
  (another ``--data-root`` with another training set size) had already rewritten them: they are written by the
  trainer's ``before_write`` now (:func:`medfm.training.runs.write_run_record`, the one writer of ``pretrain``,
  ``finetune`` and ``vqa`` too);
- ``medfm fuse`` set torch's thread count before its training-set checks (a refused run changed the process's
  settings);
- ``medfm vqa`` trained a training set smaller than a batch with one short step per epoch (``max(1, n // batch)``),
  where the main loop refuses it (:func:`medfm.training.loop.steps_per_epoch`); VQA-RAD's train split (3,064
  questions) and the shipped recipes' batch of 64 are far from it.
"""
from __future__ import annotations

import shutil

import pytest
import yaml

from medfm.config import from_dict
from tests.training.runs_helpers import (folder_snapshot, fusion_recipe, hippocampus_writer, lgg_slices_writer,
                                         segment_recipe, text_segment_recipe, vqa_recipe, write_vqa_data)

TRAIN = {"epochs": 1, "batch_size": 2, "precision": "fp32", "seed": 5, "log_every": 1}
SEG_DEC = {"decoder_channels": [8, 8, 8, 8], "stem_channels": 8}


def _segment(output, root, resume, train):
    from medfm.training.segmentation import run_segmentation

    run_segmentation(segment_recipe(train), output, data_root=str(root), resume=resume)


def _text_segment(output, root, resume, train):
    from medfm.training.text_segmentation import run_text_segmentation

    run_text_segmentation(text_segment_recipe(root, train), output, data_root=str(root), resume=resume)


def _fuse(task):
    def run(output, root, resume, train):
        from medfm.training.fusion import FusionRecipe, run_fusion

        models = ({"3mat": {"fuser": "3mat", "args": {"heads": 2, "layers": 1}}} if task == "classification" else
                  {"zf": {"fuser": "fused_unet", "args": {"fusion": "zero_fill", "decoder": SEG_DEC}}})
        recipe = {"task": task, "data": {"img_size": 16}, "dim": 16, "models": models, "train": train,
                  "image_encoder": {"name": "resnet_test"}, "protocol": {"n_boot": 5}}
        if task == "segmentation":
            recipe["modalities"] = ["pre", "flair", "post"]
        run_fusion(from_dict(FusionRecipe, recipe), output, str(root), resume)
    return run


def _fake_lgg(slices):
    from tests.helpers.lgg_fusion import write_fake_lgg

    return lambda root: write_fake_lgg(root, slices=slices)


# name: (runner, the data of the run, the same data with more training items, whether it records init.json)
RUNNERS = {
    "segment": (_segment, hippocampus_writer(10), hippocampus_writer(16), True),  # 8 / 13 training volumes
    "text_segment": (_text_segment, lgg_slices_writer((1, 2, 10)), lgg_slices_writer((1, 2, 3, 4, 10)), True),
    "fuse_classification": (_fuse("classification"), _fake_lgg(4), _fake_lgg(8), False),
    "fuse_segmentation": (_fuse("segmentation"), _fake_lgg(4), _fake_lgg(8), False),
}


@pytest.mark.parametrize("name", list(RUNNERS))
def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path, name):
    """config.yaml (another train.log_every: a key a resume may change) was rewritten, and init.json written, before
    the trainer refused the resume; a resume on the run's own data still writes both."""
    run, write, write_more, records_init = RUNNERS[name]
    write(tmp_path / "d")
    write_more(tmp_path / "more")
    out = tmp_path / "run"
    run(out, tmp_path / "d", False, TRAIN)
    for final in out.glob("models/*/model"):  # fuse: killed after the model's last checkpoint
        shutil.rmtree(final)
    (out / "init.json").unlink(missing_ok=True)  # (a run of an older medfm: a resume writes one)
    before = folder_snapshot(out)
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its state \(epoch 1, step 0, global step "
                                         r"\d+\) does not fit this run's 1 epochs of \d+ steps"):
        run(out, tmp_path / "more", True, {**TRAIN, "log_every": 2})
    assert folder_snapshot(out) == before
    run(out, tmp_path / "d", True, {**TRAIN, "log_every": 2})  # the run's own data: resumed, recorded
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["log_every"] == 2
    assert (out / "init.json").is_file() == records_init


def test_fuse_sets_the_thread_count_after_its_training_set_checks(tmp_path, thread_calls):
    from medfm.config import ConfigError
    from medfm.training.fusion import run_fusion

    _fake_lgg(4)(tmp_path / "d")  # 8 training slices, 4 of them with 'pre'
    with pytest.raises(ValueError, match=r"^the training set has 8 samples, fewer than one batch of 64"):
        _fuse("classification")(tmp_path / "run", tmp_path / "d", False, {**TRAIN, "batch_size": 64, "num_threads": 3})
    with pytest.raises(ConfigError, match=r"models\.single_pre: the training set has 4 samples, fewer than one batch"):
        run_fusion(fusion_recipe("classification", 5), tmp_path / "run", str(tmp_path / "d"))  # (train.num_threads: 1)
    assert thread_calls == [] and not (tmp_path / "run").exists()  # was [3, 1]


def test_a_vqa_training_set_smaller_than_a_batch_is_refused_before_anything_is_written(
        tmp_path, thread_calls):
    """16 questions, batch 32: one step of 16 per epoch was trained (max(1, 16 // 32))."""
    from medfm.training.vqa import run_vqa

    recipe = vqa_recipe(tmp_path, epochs=1, batch_size=32, num_threads=3)
    with pytest.raises(ValueError, match=r"^the training set has 16 samples, fewer than one batch of 32 "
                                         r"\(train\.batch_size\)$"):
        run_vqa(recipe, tmp_path / "run", data_root=write_vqa_data(tmp_path / "d16", 1))
    assert thread_calls == [] and not (tmp_path / "run").exists()
