"""Python API audit of :mod:`medfm.training`: a recipe or run made from Python with a bad value gets one clear
line naming it (as a recipe file read by :func:`medfm.config.from_dict` does), never a deep trace, a silently
wrong run or a half-written run folder.

Before: a fine-tuning recipe's misspelt data set was called an unknown "MedMNIST data set or corpus" (the
command says the corpus cannot be fine-tuned); ``verify_md5="no"``, ``head_norm="no"``, ``question_only="no"``
were taken as true; a section given as a mapping was an ``AttributeError`` and one given as a string passed;
``modalities="flair"`` was split into letters; a seed above 2**64 / 1e6 overflowed at the first step; an output
path that is a file failed with ``[Errno 17]`` after the data were read; a set smaller than a batch left
``config.yaml`` behind; a resume whose data or trainable parameters differ ran nothing, or failed in torch.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from medfm.config import ConfigError, from_dict
from medfm.data.errors import UnsupportedSizeError
from medfm.data.medmnist_info import CORPUS_NOT_FOR_FINETUNING
from medfm.training.fusion import FusionModelConfig, FusionProtocolConfig, FusionRecipe
from medfm.training.loop import MAX_SEED, TrainConfig, Trainer
from medfm.training.recipes import (DataConfig, EncoderConfig, FinetuneDataConfig, FinetuneRecipe, ObjectiveConfig,
                                    PretrainRecipe)
from medfm.training.seg_tasks import SegDataConfig
from medfm.training.segmentation import SegEvalConfig, SegmentationRecipe
from medfm.training.text_segmentation import TextSegRecipe
from medfm.training.vqa import VQADataConfig, VQARecipe
from tests.conftest import TinyPairs, save_state_dict, tiny_train_config

TASK = {"data": {"dataset": "chase_db1", "patch": [64, 64]}}


# -- fine-tuning data sets in the command's words -------------------------------------------------------------
def test_a_finetune_recipe_names_an_unknown_data_set_as_the_command_does():
    """The CLI's words (tests/training/test_recipes_data.py): no "or corpus", no corpus among the close matches."""
    with pytest.raises(ConfigError) as info:
        from_dict(FinetuneRecipe, {"data": {"dataset": "pneumonimnist"}}, where="r.yaml")
    assert str(info.value) == ("r.yaml: data.dataset: unknown MedMNIST data set 'pneumonimnist'; did you mean "
                               "'pneumoniamnist' or 'dermamnist'?")
    with pytest.raises(ConfigError) as info:
        FinetuneRecipe(data={"dataset": "corpuss"})
    assert "or corpus" not in str(info.value) and "did you mean 'corpus'" not in str(info.value)
    for make in (lambda: FinetuneDataConfig(dataset="corpus"), lambda: FinetuneRecipe(data=DataConfig(dataset="corpus")),
                 lambda: FinetuneRecipe(data={"dataset": "corpus"})):
        with pytest.raises(ValueError) as info:
            make()
        assert str(info.value).endswith(f"data.dataset: {CORPUS_NOT_FOR_FINETUNING}")


def test_a_finetune_recipe_takes_a_data_section_made_in_python():
    recipe = FinetuneRecipe(data=DataConfig(dataset="breastmnist", size=28))
    assert type(recipe.data) is FinetuneDataConfig and recipe.data.dataset == "breastmnist"
    assert from_dict(PretrainRecipe, {"data": {"dataset": "corpus", "size": 64}}).data.dataset == "corpus"


def test_the_corpus_size_is_checked_when_the_recipe_is_made():
    with pytest.raises(UnsupportedSizeError, match=r"^data.size: the pretraining corpus is built at \[28, 64\] px, "
                                                   r"not 32$"):
        DataConfig(dataset="corpus", size=32)


# -- fields of the wrong type -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda: DataConfig(verify_md5="no"), "data.verify_md5 must be true or false, got 'no' (str)"),
    (lambda: DataConfig(data_root=3), "data.data_root must be a string, got 3"),
    (lambda: FinetuneRecipe(head_norm="no"), "head_norm must be true or false, got 'no' (str)"),
    (lambda: FinetuneRecipe(encoder="resnet18"),
     "encoder must be an EncoderConfig or a mapping of its settings, got 'resnet18' (str)"),
    (lambda: FinetuneRecipe(lora=None), "lora must be a LoraSettings or a mapping of its settings, got None (NoneType)"),
    (lambda: FinetuneRecipe(mode=None), "mode must be a string, got None (NoneType)"),
    (lambda: EncoderConfig(args=None), "encoder.args must be a mapping, got None (NoneType)"),
    (lambda: EncoderConfig(pretrained=3), "encoder.pretrained must be a string, got 3"),
    (lambda: ObjectiveConfig(name=None), "objective.name must be a string, got None (NoneType)"),
    (lambda: PretrainRecipe(objective="simclr"),
     "objective must be an ObjectiveConfig or a mapping of its settings, got 'simclr' (str)"),
    (lambda: SegDataConfig(dataset=["chase_db1"]), "data.dataset must be a string, got ['chase_db1']"),
    (lambda: SegDataConfig(flip_axes=None), "data.flip_axes must be a list of integers, got None (NoneType)"),
    (lambda: SegEvalConfig(distances="no"), "eval.distances must be true or false, got 'no' (str)"),
    (lambda: SegmentationRecipe(decoder=None), "decoder must be a mapping, got None (NoneType)"),
    (lambda: TextSegRecipe(tasks=None), "tasks must be a list, got None (NoneType)"),
    (lambda: TextSegRecipe(tasks=[TASK], alternate="no"), "alternate must be true or false, got 'no' (str)"),
    (lambda: TextSegRecipe(tasks=[TASK], text_encoder="minilm"), "text_encoder must be a mapping, got 'minilm' (str)"),
    (lambda: VQARecipe(question_only="no"), "question_only must be true or false, got 'no' (str)"),
    (lambda: VQARecipe(requires_init=1), "requires_init must be true or false, got 1"),
    (lambda: VQADataConfig(data_root=3), "data.data_root must be a string, got 3"),
    (lambda: FusionRecipe(modalities="flair", models={"a": {}}), "modalities must be a list of strings, got 'flair' (str)"),
    (lambda: FusionRecipe(models=["a"]), "models must be a mapping, got ['a']"),
    (lambda: FusionModelConfig(args=None), "args must be a mapping, got None (NoneType)"),
    (lambda: FusionProtocolConfig(mcar_rates="0.5"), "protocol.mcar_rates must be a list of numbers, got '0.5' (str)"),
    (lambda: FusionProtocolConfig(mnar_modalities="flair"),
     "protocol.mnar_modalities must be a list of strings, got 'flair' (str)"),
    (lambda: TrainConfig(seed=2**60), "train.seed must be <= 2**32 - 1, got 1152921504606846976"),
    (lambda: FusionProtocolConfig(seed=2**64), "protocol.seed must be <= 2**32 - 1, got 18446744073709551616"),
])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert str(info.value) == message


def test_sections_given_as_mappings_are_built_and_checked():
    seg = SegmentationRecipe(data={"dataset": "chase_db1"}, eval={"overlap": 0.25}, train={"epochs": 2})
    assert (type(seg.data), seg.eval.overlap, seg.train.epochs) == (SegDataConfig, 0.25, 2)
    assert VQARecipe(head={"dim": 64}).head.dim == 64
    assert FusionRecipe(protocol={"n_boot": 5}, models={"a": {}}).protocol.n_boot == 5
    with pytest.raises(ConfigError, match=r"^FinetuneRecipe.augment: unknown key 'crop'"):
        FinetuneRecipe(augment={"crop": 1})
    with pytest.raises(ConfigError, match=r"^FinetuneRecipe: train.epochs must be an integer >= 1, got 0$"):
        FinetuneRecipe(train={"epochs": 0})


# -- run folders --------------------------------------------------------------------------------------------------
def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _step(model, batch, gen):
    return {"loss": nn.functional.cross_entropy(model(batch["x"]), batch["y"])}


def _finetune_recipe(**train):
    return FinetuneRecipe(data=DataConfig(verify_md5=False, val_split=None), encoder=EncoderConfig(name="resnet_test"),
                          mode="full", augment=None, train=TrainConfig(**{"epochs": 1, "batch_size": 4,
                                                                          "precision": "fp32", **train}))


def test_an_output_that_is_a_file_is_refused_before_the_data_are_read(tmp_path, monkeypatch):
    from medfm.training.runs import run_finetune, run_pretrain

    monkeypatch.setenv("MEDFM_DATA", str(tmp_path / "no-data"))  # reading the data would fail otherwise
    (tmp_path / "file").write_text("x")
    file = repr(str(tmp_path / "file"))
    for output, message in ((tmp_path / "file", f"cannot write {file}: {file} is a file, not a folder; a run writes "
                                                 "its files in a folder there: choose another output"),
                            (tmp_path / "file" / "run", f"cannot write {str(tmp_path / 'file' / 'run')!r}: {file} is a "
                                                        "file, not a folder; a run writes its files in a folder there: "
                                                        "choose another output")):
        for run in (lambda: run_finetune(_finetune_recipe(), output),
                    lambda: run_pretrain(PretrainRecipe(encoder=EncoderConfig(name="resnet_test")), output),
                    lambda: Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), output, save_state_dict).fit()):
            with pytest.raises(NotADirectoryError) as info:
                run()
            assert str(info.value) == message
    assert (tmp_path / "file").read_text() == "x"


def test_resume_must_be_a_bool(tmp_path):
    from medfm.training.runs import run_finetune

    with pytest.raises(ValueError, match=r"^resume must be true or false, got 'no' \(str\)$"):
        run_finetune(_finetune_recipe(), tmp_path / "run", resume="no")
    assert not (tmp_path / "run").exists()


def test_trainer_fit_refuses_a_non_bool_resume_before_creating_the_run_folder(tmp_path):
    """Trainer.fit checks resume (and its output) once, first: resume="no" made the folder before it was refused."""
    trainer = Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), tmp_path / "run", save_state_dict)
    with pytest.raises(ValueError, match=r"^resume must be true or false, got 'no' \(str\)$"):
        trainer.fit(resume="no")
    assert not (tmp_path / "run").exists()


def test_a_training_set_smaller_than_a_batch_writes_nothing(tmp_path, write_medmnist):
    from medfm.training.runs import run_pretrain

    root = write_medmnist("pneumoniamnist")  # 6 training images
    recipe = PretrainRecipe(encoder=EncoderConfig(name="resnet_test"), train=TrainConfig(batch_size=8, precision="fp32"))
    with pytest.raises(ValueError, match=r"^the training set has 6 samples, fewer than one batch of 8 "
                                         r"\(train.batch_size\)$"):
        run_pretrain(recipe, tmp_path / "run", data_root=str(root))
    assert not (tmp_path / "run").exists()  # was: config.yaml


def test_the_largest_seed_trains(tmp_path):
    Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(epochs=1, seed=MAX_SEED), tmp_path / "run",
            save_state_dict).fit()
    assert json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())["counters"]["epoch"] == 1


# -- resume -------------------------------------------------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path):
    Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), tmp_path / "run", save_state_dict).fit()
    return tmp_path / "run"


@pytest.mark.parametrize("state", ["{}", "[1]", '{"optimizer": {"param_groups": []}}'])
def test_a_damaged_trainer_state_is_named(finished_run, state):
    (finished_run / "checkpoint" / "trainer_state.json").write_text(state)
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: training state missing or corrupt \("):
        Trainer(_tiny(), _step, TinyPairs(), tiny_train_config(), finished_run, save_state_dict).fit(resume=True)


def test_a_resume_with_other_trainable_parameters_is_named(finished_run):
    model = _tiny()
    model[0].requires_grad_(False)
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its optimizer state does not fit the "
                                         r"model's trainable parameters"):
        Trainer(model, _step, TinyPairs(), tiny_train_config(), finished_run, save_state_dict).fit(resume=True)


@pytest.mark.parametrize("data, cfg", [(TinyPairs(32), tiny_train_config()), (TinyPairs(), tiny_train_config(batch_size=2))])
def test_a_resume_with_other_steps_per_epoch_is_refused(finished_run, data, cfg):
    """It trained nothing (the saved counters said the run had ended) and reported success."""
    steps = []
    with pytest.raises(ValueError, match=r"^cannot resume from .*checkpoint: its state \(epoch 2, step 0, global step 8\) "
                                         r"does not fit this run's 2 epochs of 8 steps"):
        Trainer(_tiny(), lambda m, b, g: steps.append(1) or _step(m, b, g), data, cfg, finished_run,
                save_state_dict).fit(resume=True)
    assert steps == []


# -- the Trainer's own arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("step, message", [
    (lambda m, b, g: {"logits": m(b["x"])}, "the step's loss must be a scalar tensor, got None"),
    (lambda m, b, g: {"loss": 1.0}, "the step's loss must be a scalar tensor, got 1.0"),
    (lambda m, b, g: {"loss": nn.functional.cross_entropy(m(b["x"]), b["y"], reduction="none")},
     "the step's loss must be a scalar tensor, got a tensor of shape (4,)"),
])
def test_a_step_without_a_scalar_loss_is_named(tmp_path, step, message):
    with pytest.raises(TypeError) as info:
        Trainer(_tiny(), step, TinyPairs(), tiny_train_config(), tmp_path / "run", save_state_dict).fit()
    assert str(info.value).startswith(message)


def test_trainer_arguments_are_checked_when_it_is_made(tmp_path):
    with pytest.raises(TypeError, match=r"^cfg must be a TrainConfig, got dict$"):
        Trainer(_tiny(), _step, TinyPairs(), {"epochs": 1}, tmp_path / "run", save_state_dict)
    with pytest.raises(ValueError, match=r"^the model has no trainable parameters"):
        Trainer(_tiny().requires_grad_(False), _step, TinyPairs(), tiny_train_config(), tmp_path / "run", save_state_dict)
    assert not (tmp_path / "run").exists()
