import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rng():
    # tests that draw with the global RNG (torch.randn without a generator) are deterministic
    torch.manual_seed(0)
    yield
