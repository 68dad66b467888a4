"""Fixtures shared by the test modules (the Triton interpreter switch is in the root conftest.py)."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Small convolutions run faster on one thread, and much faster on a busy 2-core machine
    (2-thread OpenMP barriers stall when the other core is taken). Use it per module with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
