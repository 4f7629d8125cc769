"""Every training runner, killed right after a mid-epoch checkpoint and resumed, ends with the
weights (and ``metrics.jsonl``) of an uninterrupted run with the same seed (DESIGN.md, "Runs").

One test over the runners not covered elsewhere (pretraining: ``test_resume.py``; LoRA fine-tune:
``test_runner_audit.py``; VQA: ``tests/adapters/test_vqa.py``): ``medfm segment`` 2D (random
patches, flips), 3D (random crops, foreground oversampling), 2.5D (slice context) and
text-conditioned (several tasks in mixed batches, missing-sequence dropout); ``medfm fuse``
classification (modality dropout, hierarchical channel sampling, MNAR training missingness,
natural missing sequences) and segmentation; full fine-tuning with augmentation and dropout.
Each recipe trains on tiny generated files in the real on-disk formats, 2 epochs of 4 steps with a
checkpoint every 3 steps, and with dropout or stochastic depth where the architecture has it, so a
resume must restore every random stream the training draws from (torch's global RNG for dropout,
the per-step generator of crops, flips, views and modality dropout, the sample order) to match.
(All of them matched before this file was written; a resume that does not restore the torch RNG
fails the dropout cases, one that reseeds the per-step generator fails all.) The kill is in-process: an
exception right after the checkpoint is written (disk state as after a SIGKILL there). The recipes and their data:
tests/helpers/runner_cases.py.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import Killed, kill_after_first_mid_epoch_checkpoint, logged_rows
from tests.helpers.runner_cases import RUNNERS


@pytest.mark.parametrize("name", list(RUNNERS))
def test_runner_killed_after_a_mid_epoch_checkpoint_resumes_bit_identically(tmp_path, monkeypatch, name):
    write, run, runs, finals, victim = RUNNERS[name]
    root = tmp_path / "data"
    write(root)
    run(tmp_path / "full", root, False)
    undo = kill_after_first_mid_epoch_checkpoint(monkeypatch, victim)
    with pytest.raises(Killed):
        run(tmp_path / "killed", root, False)
    undo()
    state = tmp_path / "killed" / (victim and f"models/{victim}" or ".") / "checkpoint" / "trainer_state.json"
    assert json.loads(state.read_text())["counters"] == {"epoch": 0, "step_in_epoch": 3, "global_step": 3}
    run(tmp_path / "killed", root, True)
    for sub in finals:
        a, b = load_file(str(tmp_path / "full" / sub)), load_file(str(tmp_path / "killed" / sub))
        assert a.keys() == b.keys()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"{sub}: {len(differ)} of {len(a)} tensors differ after the resume, e.g. {differ[:3]}"
    for sub in runs:
        assert (logged_rows(tmp_path / "killed" / sub / "metrics.jsonl")
                == logged_rows(tmp_path / "full" / sub / "metrics.jsonl")), sub


# -- the CUDA generators (dropout on a GPU) -------------------------------------------------------
def test_the_training_state_saves_and_restores_every_cuda_generator(tmp_path, monkeypatch):
    """Dropout and stochastic depth on a GPU draw from the CUDA generators, which
    ``torch.get_rng_state`` leaves out; a resume used to keep them as the runner's reseed left them
    (the dropout masks of the first steps again). A fake two-GPU ``torch.cuda`` (this runs on the
    CPU) checks that the state saves every device's generator and sets each back."""
    from medfm.training.state import load_training_state, save_training_state

    states = [torch.arange(16, dtype=torch.uint8) * (i + 2) for i in range(2)]
    restored = {}
    fake = {"is_available": lambda: True, "is_initialized": lambda: True, "device_count": lambda: 2,
            "get_rng_state_all": lambda: [s.clone() for s in states],
            "set_rng_state": lambda state, device="cuda": restored.__setitem__(device, state.clone())}
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    save_training_state(tmp_path, model, opt, {"step": 1})
    states[0].zero_()  # the generators move on after the checkpoint
    assert load_training_state(tmp_path, model, opt) == {"step": 1}
    assert sorted(restored) == [0, 1]
    assert torch.equal(restored[0], torch.arange(16, dtype=torch.uint8) * 2) and torch.equal(restored[1], states[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (dropout on a GPU uses the CUDA generator)")
def test_dropout_on_a_gpu_resumes_bit_identically(tmp_path, monkeypatch):
    from medfm.training.loop import Trainer
    from tests.conftest import TinyPairs, save_state_dict, tiny_train_config

    def tiny():  # as the runners do: reseed (CPU and CUDA generators), then build
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def step(model, batch, gen):
        return {"loss": torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])}

    def trainer(name):
        return Trainer(tiny(), step, TinyPairs(), tiny_train_config(), tmp_path / name, save_state_dict)

    full = trainer("full").fit()
    undo = kill_after_first_mid_epoch_checkpoint(monkeypatch)
    with pytest.raises(Killed):
        trainer("killed").fit()
    undo()
    resumed = trainer("killed").fit(resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert next(iter(b.values())).is_cuda and all(torch.equal(a[k], b[k]) for k in a)
