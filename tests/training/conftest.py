"""Fixtures of the training tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def thread_calls(monkeypatch):
    """The thread counts set through ``torch.set_num_threads`` (recorded, not applied)."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    return calls
