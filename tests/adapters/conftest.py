"""Fixtures shared by the adapter tests."""
from __future__ import annotations

import pytest
import torch

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
