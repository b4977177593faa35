"""model.compute_dtype=bfloat16: matmuls with bfloat16 inputs and float32 accumulation, float32 everything else."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxnerf.data import scene as scene_lib
from jaxnerf.nerf import fields
from jaxnerf.nerf import layers
from jaxnerf.nerf import model as model_lib
from jaxnerf.run import state as state_lib
from jaxnerf.run import train as train_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.errors import ConfigError
from jaxnerf.errors import WorkdirError
from conftest import REPO
from test_model import random_rays
from test_model import small_config
from test_train_eval import tiny_config


def bf16_rounded(x):
  """float64 copy of x rounded to bfloat16 (round to nearest even, as XLA converts)."""
  return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def test_rounded_matmul_and_its_gradients_against_float64(rng):
  x = jnp.asarray(rng.normal(size=(64, 40)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(40, 24)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(64, 24)), jnp.float32)
  dot_general = layers.matmul_in("bfloat16")
  matmul = lambda x, w: dot_general(x, w, (((1,), (0,)), ((), ())))
  y, vjp = jax.vjp(matmul, x, w)
  dx, dw = vjp(g)
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32
  xr, wr, gr = bf16_rounded(x), bf16_rounded(w), bf16_rounded(g)
  # Products of bfloat16 values are exact in float32; only the float32 sums round.
  np.testing.assert_allclose(y, xr @ wr, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, gr @ wr.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, xr.T @ gr, rtol=1e-5, atol=1e-5)
  # and the rounding did happen: float32 inputs give another result.
  exact = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  assert np.max(np.abs(np.asarray(y) - exact)) > 1e-3
  assert layers.matmul_in("float32") is None


@pytest.mark.parametrize("field_name", ["mlp", "hash"])
def test_bfloat16_field_keeps_float32_params_and_outputs_close_to_float32(rng, field_name):
  points = jnp.asarray(rng.uniform(-1, 1, size=(8, 16, 3)), jnp.float32)
  viewdirs = jnp.asarray(np.tile([[0.0, 0.6, -0.8]], (8, 1)), jnp.float32)
  f32 = fields.FIELDS[field_name].build(small_config(), small_config().data.scene_box)
  bf16_config = small_config(**{"model.compute_dtype": "bfloat16"})
  bf16 = fields.FIELDS[field_name].build(bf16_config, bf16_config.data.scene_box)
  params = f32.init(jax.random.key(0), points, viewdirs)
  assert jax.tree.structure(params) == jax.tree.structure(bf16.init(jax.random.key(0), points, viewdirs))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(bf16.init(jax.random.key(0), points, viewdirs)))
  (rgb32, raw32), (rgb16, raw16) = f32.apply(params, points, viewdirs), bf16.apply(params, points, viewdirs)
  assert rgb16.dtype == raw16.dtype == jnp.float32
  # bfloat16 keeps 8 significant bits: relative errors of a few 1e-3 per matmul.
  np.testing.assert_allclose(rgb16, rgb32, atol=0.02)
  np.testing.assert_allclose(raw16, raw32, atol=0.05 * float(np.abs(raw32).max()) + 1e-3)
  assert np.max(np.abs(rgb16 - rgb32)) > 0  # the bfloat16 path is the one taken


def test_bfloat16_train_step_runs_bfloat16_dots_with_float32_state(rng):
  config = small_config(**{"model.compute_dtype": "bfloat16"})
  config.train.batch_size = 32
  model = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer)
  step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
  batch = {"rays": random_rays(rng, 32), "rgb": jnp.asarray(rng.uniform(size=(32, 3)), jnp.float32)}
  hlo = step.lower(state, batch, jax.random.key(0)).as_text()
  assert "bf16" in hlo and "dot_general" in hlo
  new_state, metrics = step(state, batch, jax.random.key(0))
  assert np.isfinite(metrics["loss"]) and int(new_state.nonfinite_total) == 0
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((new_state.params, new_state.opt_state))
             if jnp.issubdtype(leaf.dtype, jnp.floating))
  assert any(np.max(np.abs(a - b)) > 0 for a, b in zip(jax.tree.leaves(new_state.params),
                                                       jax.tree.leaves(state.params)))


def test_compute_dtype_is_checked():
  with pytest.raises(ConfigError, match=r"config.model.compute_dtype: expected one of \('float32', 'bfloat16'\)"):
    model_lib.build_model(small_config(**{"model.compute_dtype": "float16"}))


EIGHT_DEVICE_STEPS = """
import sys
import jax
import numpy as np
from jaxnerf.run import state as state_lib
from jaxnerf.run import train as train_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.nerf import layers
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.data import scene as scene_lib
from test_train_eval import tiny_config
config = tiny_config(3)
config.model.compute_dtype = "bfloat16"
config.train.val_every = 0
state = train_lib.train_and_evaluate(config, sys.argv[1])
np.savez(sys.argv[2], *[np.asarray(leaf) for leaf in jax.tree.leaves(state.params)])
"""


def test_bfloat16_steps_on_eight_devices_match_one_device(tmp_path):
  """The sharded step with bfloat16 matmuls: rows are rounded alike however the batch is split, so 8 forced CPU
  devices agree with one up to float32 summation order."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"), os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.Popen([sys.executable, "-c", EIGHT_DEVICE_STEPS, str(tmp_path / "eight"),
                           str(tmp_path / "eight.npz")], env=env, stderr=subprocess.PIPE, text=True)
  config = tiny_config(3)
  config.model.compute_dtype = "bfloat16"
  config.train.val_every = 0
  state = train_lib.train_and_evaluate(config, str(tmp_path / "one"))
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  with np.load(tmp_path / "eight.npz") as eight:
    leaves = jax.tree.leaves(state.params)
    assert len(eight.files) == len(leaves)
    for i, leaf in enumerate(leaves):
      np.testing.assert_allclose(eight[f"arr_{i}"], leaf, rtol=1e-4, atol=1e-5)


def test_runs_made_before_the_new_model_fields_still_open(tmp_path):
  """A run whose config.json predates model.compute_dtype, model.mip and the SIREN switches behaved as their
  defaults do: it resumes and evaluates with them, and a non-default value is reported as another model."""
  config = tiny_config(1)
  old = json.loads(config.to_json_best_effort())
  del old["model"]["compute_dtype"], old["model"]["mip"], old["model"]["mlp"]["activation"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.prepare_workdir(config, str(tmp_path))
  config.model.compute_dtype = "bfloat16"
  with pytest.raises(WorkdirError, match=r"model.compute_dtype='float32' there, 'bfloat16' here"):
    workdir_lib.prepare_workdir(config, str(tmp_path))


def test_runs_made_with_a_setting_since_removed_still_open(tmp_path):
  """model.hash.gradient_smoothing (removed) changed only gradients: a run that has it in its config.json opens."""
  config = tiny_config(1)
  old = json.loads(config.to_json_best_effort())
  old["model"]["hash"]["gradient_smoothing"] = 1.0
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.prepare_workdir(config, str(tmp_path))
  old["model"]["hash"]["num_levels"] += 1  # but a setting that shapes checkpoints still counts
  (tmp_path / "config.json").write_text(json.dumps(old))
  with pytest.raises(WorkdirError, match=r"model.hash.num_levels="):
    workdir_lib.prepare_workdir(config, str(tmp_path))
