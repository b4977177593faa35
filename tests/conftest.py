import os
import sys

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
sys.path.insert(0, os.path.join(REPO, "scripts"))  # gcs_emulator.py
SHARED_LEGO = os.path.join(REPO, "..", "shared", "data", "nerf_synthetic", "lego")
SHARED_FERN = os.path.join(REPO, "..", "shared", "data", "nerf_llff_data", "fern")
# Tests of the real scenes beside the repository (CI has them; a user's checkout need not).
needs_shared_lego = pytest.mark.skipif(not os.path.isdir(SHARED_LEGO), reason="needs ../shared/data (lego)")
needs_shared_fern = pytest.mark.skipif(not os.path.isdir(SHARED_FERN), reason="needs ../shared/data (fern)")


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


def write_llff_scene(root, rng, num_views=5):
  """A small LLFF scene in `root`: random camera poses with depth bounds in poses_bounds.npy and random 8x6
  images in images_2/ (16x12 "full size", focal 13)."""
  import numpy as np
  from PIL import Image
  (root / "images_2").mkdir(parents=True)
  poses = np.stack([np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], axis=-1)
                    for _ in range(num_views)])
  hwf = np.broadcast_to(np.array([12.0, 16.0, 13.0])[:, None], (num_views, 3, 1))
  bounds = np.stack([rng.uniform(1.0, 2.0, num_views), rng.uniform(5.0, 10.0, num_views)], axis=-1)
  np.save(root / "poses_bounds.npy", np.concatenate([np.concatenate([poses, hwf], -1).reshape(num_views, 15),
                                                     bounds], axis=-1))
  for i in range(num_views):
    Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(root / "images_2" / f"im{i}.png")
  return root


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
  """The URL of a local Cloud Storage emulator (scripts/gcs_emulator.py), with the environment that points gcsfs,
  TensorStore (orbax) and google-cloud-storage at it, in this process and the ones it starts; stopped after the
  session. Its tests skip only if the emulator cannot start."""
  import gc
  import gcs_emulator as emulator
  try:
    with emulator.running(tmp_path_factory.mktemp("gcs_emulator")) as url, pytest.MonkeyPatch.context() as env:
      for name, value in emulator.environment(url).items():
        env.setenv(name, value)
      yield url
      gc.collect()  # nothing that uploads when collected may outlive the emulator
  except emulator.EmulatorError as e:  # raised only while starting
    pytest.skip(str(e))


@pytest.fixture
def gcs_bucket(gcs_emulator):
  """gs://<a new, empty bucket> on the emulator."""
  import uuid
  import gcs_emulator as emulator
  name = f"bucket-{uuid.uuid4().hex[:12]}"
  emulator.create_bucket(gcs_emulator, name)
  return f"gs://{name}"
