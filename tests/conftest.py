import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # keep CPU numerics identical between runs of the suite
    torch.manual_seed(0)
    yield
