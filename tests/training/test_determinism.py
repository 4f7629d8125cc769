"""train.deterministic: deterministic kernels for the run, restored after it, a clear error for an op without one."""
from __future__ import annotations

import pytest
import torch

from medfm.training.determinism import DeterminismError, deterministic_kernels
from medfm.training.loop import TrainConfig, Trainer
from tests.conftest import TinyPairs, save_state_dict, tiny_train_config


def _flags():
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)


def test_the_settings_hold_inside_and_are_put_back_after(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _flags()
    with deterministic_kernels(True):
        assert _flags() == (True, True, False)
        import os
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert _flags() == before
    with deterministic_kernels(False):
        assert _flags() == before


def test_an_op_without_a_deterministic_kernel_is_one_clear_line_and_the_settings_come_back():
    before = _flags()
    with pytest.raises(DeterminismError, match=r"^train.deterministic: put_ has no deterministic kernel in torch .*"
                                               r"set train.deterministic: false"):
        with deterministic_kernels(True):
            torch.zeros(3).put_(torch.tensor([1]), torch.tensor([1.0]))
    assert _flags() == before
    with pytest.raises(ValueError, match="other"):  # other errors pass through unchanged
        with deterministic_kernels(True):
            raise ValueError("other")


def test_a_trainer_runs_its_steps_with_the_kernels_asked_for(tmp_path):
    seen = []

    def step(model, batch, gen):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return {"loss": torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])}

    for flag in (True, False):
        Trainer(torch.nn.Linear(4, 2), step, TinyPairs(), tiny_train_config(epochs=1, deterministic=flag),
                tmp_path / str(flag), save_state_dict).fit()
        assert set(seen) == {flag} and not torch.are_deterministic_algorithms_enabled()
        seen.clear()


def test_a_trainer_step_without_a_deterministic_kernel_fails_with_the_recipe_key(tmp_path):
    def step(model, batch, gen):
        torch.zeros(3).put_(torch.tensor([1]), torch.tensor([1.0]))
        return {"loss": model(batch["x"]).sum()}

    trainer = Trainer(torch.nn.Linear(4, 2), step, TinyPairs(), tiny_train_config(deterministic=True), tmp_path,
                      save_state_dict)
    with pytest.raises(DeterminismError, match="train.deterministic: false"):
        trainer.fit()
    assert not torch.are_deterministic_algorithms_enabled()


def test_deterministic_must_be_a_boolean():
    with pytest.raises(ValueError, match="train.deterministic must be true or false, got 'yes'"):
        TrainConfig(deterministic="yes")
