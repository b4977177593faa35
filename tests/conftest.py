import os

import jax
import pytest

# Tests compare against float64 numpy references; keep JAX in float32 as in training.
jax.config.update("jax_enable_x64", False)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_LEGO = os.path.join(REPO, "..", "shared", "data", "nerf_synthetic", "lego")


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
