"""A pretraining run killed with SIGKILL mid-epoch and resumed ends with the same weights."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.training.runs_helpers import write_pneumoniamnist

RECIPE = textwrap.dedent("""
    data: {dataset: pneumoniamnist, size: 28, verify_md5: false}
    encoder: {name: resnet_test}
    objective: {name: simclr, args: {hidden_dim: 32, proj_dim: 16}}
    train: {epochs: 2, batch_size: 16, lr: 1.0e-3, checkpoint_every: 3, log_every: 2, precision: fp32,
            num_threads: 1, seed: 7, deterministic: true}
""")


def _run(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "medfm.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


@pytest.fixture
def setup(tmp_path):
    root = tmp_path / "data"
    write_pneumoniamnist(root, 320)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    env = {**os.environ, "MEDFM_DATA": str(root), "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    return tmp_path, recipe, env


def _final_state(run_dir):
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(setup):
    tmp, recipe, env = setup
    full = _run(["pretrain", str(recipe), "--output", str(tmp / "full")], env)
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()[-2000:]

    victim = _run(["pretrain", str(recipe), "--output", str(tmp / "killed")], env)
    state = tmp / "killed" / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 240
    import json

    while time.time() < deadline:
        if state.is_file():
            try:
                step = json.loads(state.read_text())["counters"]["global_step"]
            except (ValueError, KeyError):
                step = 0
            if step >= 6:
                break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    counters = json.loads(state.read_text())["counters"]
    assert 0 < counters["global_step"] < 40 and counters["step_in_epoch"] > 0  # killed mid-epoch 1 of 2

    resumed = _run(["pretrain", str(recipe), "--output", str(tmp / "killed"), "--resume"], env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
    a, b = _final_state(tmp / "full"), _final_state(tmp / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_existing_checkpoint_without_resume_is_refused(setup):
    tmp, recipe, env = setup
    first = _run(["pretrain", str(recipe), "--output", str(tmp / "r"), "--epochs", "1"], env)
    assert first.wait(timeout=300) == 0
    again = _run(["pretrain", str(recipe), "--output", str(tmp / "r"), "--epochs", "1"], env)
    assert again.wait(timeout=300) == 2
    assert "--resume" in again.stderr.read().decode()
