"""Shared pytest fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def single_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core runner the
    spinning threads of parallel test workers slow the model tests ~10x; restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
