"""End to end on the demo scene: train a few steps, checkpoint, resume, evaluate."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import train as train_lib
from jaxnerf.errors import WorkdirError
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "configs"))
import demo  # noqa: E402
import demo_fast  # noqa: E402


def tiny_config(max_steps):
  config = demo.get_config()
  config.model.mlp.depth = 2
  config.model.mlp.width = 32
  config.model.mlp.skip_layer = 1
  config.model.mlp.view_width = 16
  config.model.hierarchical.num_coarse_samples = 8
  config.model.hierarchical.num_fine_samples = 8
  config.train.batch_size = 128
  config.train.max_steps = max_steps
  config.train.checkpoint_every = 3
  config.train.log_every = 2
  config.train.val_every = 3
  config.train.precrop_steps = 2
  config.eval.chunk = 2048
  return config


def tiny_fast_config(max_steps):
  """demo_fast with small hash grids and few samples: seconds-long runs of the fast model."""
  config = demo_fast.get_config()
  config.model.hash.num_levels, config.model.hash.log2_table_size, config.model.hash.max_resolution = 4, 10, 64
  config.model.proposal.num_levels, config.model.proposal.log2_table_size = 2, 8
  config.model.proposal.num_samples, config.model.proposal.num_final_samples = (8,), 8
  config.train.batch_size = 128
  config.train.max_steps = max_steps
  config.train.checkpoint_every = 3
  config.train.log_every = 2
  config.train.val_every = 3
  config.eval.chunk = 2048
  return skipping_empty_space(config)


def skipping_empty_space(config):
  """`config` with renders and training skipping empty space on a small grid refreshed whole every other step, so
  that training skips from step 2, always in the compacted call (a budget of every sample)."""
  config.occupancy.skip_empty = config.occupancy.skip_in_training = True
  config.occupancy.resolution, config.occupancy.cells_per_update, config.occupancy.update_every = 32, 32768, 2
  config.occupancy.train_skip_budgets = (1.0,)
  return config


def test_learning_rate_schedule_closed_form():
  config = demo.get_config().train
  config.lr_init, config.lr_final, config.max_steps = 1e-3, 1e-5, 100
  schedule = state_lib.learning_rate_schedule(config)
  np.testing.assert_allclose([schedule(0), schedule(50), schedule(100), schedule(200)],
                             [1e-3, 1e-4, 1e-5, 1e-5], rtol=1e-5)
  config.lr_delay_steps, config.lr_delay_mult = 10, 0.01
  schedule = state_lib.learning_rate_schedule(config)
  np.testing.assert_allclose(schedule(0), 1e-5, rtol=1e-5)
  np.testing.assert_allclose(schedule(5), 1e-3 * 10 ** (-2 * 5 / 100) * (0.01 + 0.99 * np.sin(np.pi / 4)),
                             rtol=1e-5)


@pytest.mark.parametrize("make_config", [tiny_config, tiny_fast_config], ids=["classic", "fast"])
def test_train_resume_and_evaluate(tmp_path, make_config):
  config = make_config(max_steps=6)
  straight_dir = str(tmp_path / "straight")
  straight = train_lib.train_and_evaluate(config, straight_dir)
  assert int(straight.step) == 6
  assert sorted(os.listdir(os.path.join(straight_dir, "checkpoints"))) == ["3", "6"]
  assert json.load(open(os.path.join(straight_dir, "config.json")))["train"]["max_steps"] == 6
  assert any(f.startswith("events") for f in os.listdir(os.path.join(straight_dir, "tensorboard")))

  # A run stopped after its step-3 checkpoint, started again with the same config.
  workdir = str(tmp_path / "run")
  shutil.copytree(straight_dir, workdir)
  shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))
  resumed = train_lib.train_and_evaluate(config, workdir)
  assert int(resumed.step) == 6
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
  # Batches and keys depend only on the step, so the resumed run reproduces the uninterrupted one.
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # Nothing left to do: a finished run restarts as a no-op.
  again = train_lib.train_and_evaluate(config, workdir)
  assert int(again.step) == 6

  # A save of train.py in progress: evaluating meanwhile must not remove it (only the writer cleans up).
  saving = os.path.join(workdir, "checkpoints", "9.orbax-checkpoint-tmp-1234")
  os.makedirs(os.path.join(saving, "params"))
  result = eval_lib.evaluate(config, workdir)
  assert os.path.isdir(saving)
  written = json.load(open(os.path.join(workdir, "eval", "metrics.json")))
  # Evaluation records its resolved config; its data settings are those the run trained with.
  used = json.load(open(os.path.join(workdir, "eval", "config.json")))
  assert used["data"] == json.load(open(os.path.join(workdir, "config.json")))["data"]
  assert used["eval"]["split"] == "test" and workdir_lib.data_differences(config, workdir) == []
  black = config.copy_and_resolve_references()
  black.data.white_background = False
  assert workdir_lib.data_differences(black, workdir) == [("data.white_background", False, True)]
  assert written == json.loads(json.dumps(result))
  assert written["step"] == 6
  assert [r["file"] for r in written["per_image"]] == [f"test/r_{i}" for i in range(0, 200, 25)]
  from jaxnerf.data import loaders
  views = loaders.load_views(config, "test")
  for entry, target in zip(written["per_image"], views.images):
    png = np.asarray(Image.open(os.path.join(workdir, entry["render"])), np.float64) / 255
    assert png.shape == (100, 100, 3)
    assert os.path.exists(os.path.join(workdir, entry["render"].replace(".png", "_depth.png")))
    assert np.load(os.path.join(workdir, entry["render"].replace(".png", "_depth.npy"))).shape == (100, 100)
    png_psnr = -10 * np.log10(np.mean((png - target) ** 2))
    assert abs(png_psnr - entry["psnr"]) < 0.3
    assert 0 < entry["ssim"] <= 1
  np.testing.assert_allclose(written["psnr"], np.mean([r["psnr"] for r in written["per_image"]]))

  # An earlier checkpoint evaluates into its own folder; the latest's results stay.
  earlier = eval_lib.evaluate(config, workdir, step=3)
  assert earlier["step"] == 3 and earlier["psnr"] != result["psnr"]
  assert json.load(open(os.path.join(workdir, "eval", "step_3", "metrics.json")))["psnr"] == earlier["psnr"]
  assert all(r["render"].startswith(os.path.join("eval", "step_3", "test"))
             and os.path.exists(os.path.join(workdir, r["render"])) for r in earlier["per_image"])
  assert json.load(open(os.path.join(workdir, "eval", "metrics.json"))) == written
  with pytest.raises(WorkdirError, match="no checkpoint of step 4"):
    eval_lib.evaluate(config, workdir, step=4)
  assert os.path.isdir(saving)


def test_command_line_train_resume_eval_with_relative_workdir(tmp_path):
  """As a user runs it: overrides on the command line, a relative --workdir, the same command twice."""
  overrides = ["--config.model.mlp.depth=2", "--config.model.mlp.width=16", "--config.model.mlp.skip_layer=1",
               "--config.model.hierarchical.num_coarse_samples=4", "--config.model.hierarchical.num_fine_samples=4",
               "--config.train.batch_size=64", "--config.train.checkpoint_every=2", "--config.train.val_every=0",
               "--config.eval.stride=4"]

  def run(script, max_steps):
    cmd = [sys.executable, os.path.join(REPO, script), "--workdir=run", f"--config.train.max_steps={max_steps}"]
    result = subprocess.run(cmd + overrides, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result

  run("train.py", 2)
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2"]
  resumed = run("train.py", 4)
  assert "resumed" in resumed.stderr
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["2", "4"]
  assert "step 4: mean PSNR" in run("eval.py", 4).stdout
  written = json.load(open(tmp_path / "run" / "eval" / "metrics.json"))
  assert [r["file"] for r in written["per_image"]] == ["test/r_0", "test/r_100"]
