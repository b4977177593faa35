import os

import jax
import pytest

# Tests compare against float64 numpy references; keep JAX in float32 as in training.
jax.config.update("jax_enable_x64", False)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Command-line overrides that make any config a seconds-long run (2 steps of a 2x16 MLP).
TINY = ["--config.model.mlp.depth=2", "--config.model.mlp.width=16", "--config.model.mlp.skip_layer=1",
        "--config.model.mlp.view_width=8", "--config.model.hierarchical.num_coarse_samples=4", "--config.model.hierarchical.num_fine_samples=4",
        "--config.train.batch_size=64", "--config.train.max_steps=2", "--config.train.val_every=0",
        "--config.eval.chunk=1024"]
SHARED_LEGO = os.path.join(REPO, "..", "shared", "data", "nerf_synthetic", "lego")


def pytest_configure(config):
  # Tests start train.py and friends with subprocess (fork then exec at once), which JAX's at-fork warning
  # cannot tell from a bare fork.
  config.addinivalue_line("filterwarnings", r"ignore:os\.fork\(\) was called:RuntimeWarning")


@pytest.fixture
def rng():
  import numpy as np
  return np.random.default_rng(0)


def random_rotation(rng):
  """A uniformly random 3x3 rotation (float64)."""
  import numpy as np
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  return q
