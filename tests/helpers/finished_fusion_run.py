"""A finished ``medfm fuse`` classification run that tests copy and change, for the fusion resume tests.

The fixture is module-scoped: a test module takes it with ``finished = finished_fusion_run.finished`` (one run per
module, made on first use from the ``lgg`` fixture's data root)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.training.runs_helpers import fusion_recipe


@pytest.fixture(scope="module")
def finished(lgg, tmp_path_factory):
    """A finished classification run of ``late`` and ``single_pre`` (:func:`fusion_recipe`); tests copy it."""
    from medfm.training.fusion import run_fusion

    out = tmp_path_factory.mktemp("finished") / "run"
    run_fusion(fusion_recipe("classification", 4), out, str(lgg))
    return out


def copy_run(finished: Path, tmp_path: Path) -> Path:
    """A copy of the run folder ``finished`` at ``tmp_path/run`` (returned), for a test to change."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out
