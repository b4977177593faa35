"""Non-finite steps are skipped and counted; a run of them stops training; SIGTERM saves and exits cleanly."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxnerf.run import train as train_lib
from jaxnerf.data import batching
from jaxnerf.errors import TrainingDivergedError
from jaxnerf.run import state as state_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.data import scene as scene_lib
from conftest import REPO
from conftest import TINY
from test_user_errors import tiny_config


def test_nonfinite_step_is_skipped_and_counted():
  config = tiny_config()
  model = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer)
  step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
  from jaxnerf.data import loaders
  batch = batching.RayBatcher(loaders.load_views(config, "test"), 64)(0)
  poisoned = dict(batch, rgb=np.where(np.arange(64)[:, None] == 5, np.nan, batch["rgb"]))
  key = jax.random.key(0)

  skipped, _ = step(state, poisoned, key)
  assert int(skipped.step) == 1 and int(skipped.nonfinite_streak) == 1 and int(skipped.nonfinite_total) == 1
  for new, old in zip(jax.tree.leaves((skipped.params, skipped.opt_state)),
                      jax.tree.leaves((state.params, state.opt_state))):
    np.testing.assert_array_equal(new, old)
  skipped, _ = step(skipped, poisoned, key)
  assert int(skipped.nonfinite_streak) == 2
  applied, metrics = step(skipped, batch, key)
  assert int(applied.nonfinite_streak) == 0 and int(applied.nonfinite_total) == 2
  assert np.isfinite(float(metrics["loss"]))
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(applied.params),
                                                      jax.tree.leaves(skipped.params)))


def test_training_stops_after_too_many_nonfinite_steps(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  config = tiny_config()
  config.train.max_steps = 4
  config.train.checkpoint_every = 2
  train_lib.train_and_evaluate(config, workdir)

  real_call = batching.RayBatcher.__call__

  def poisoned(self, step):
    batch = real_call(self, step)
    return dict(batch, rgb=batch["rgb"] * np.nan) if step >= 5 else batch

  monkeypatch.setattr(batching.RayBatcher, "__call__", poisoned)
  config.train.max_steps = 50
  config.train.max_nonfinite_steps = 3
  with pytest.raises(TrainingDivergedError, match="steps 6..8: loss or gradients not finite 3 steps in a row"):
    train_lib.train_and_evaluate(config, workdir)
  # Step 6 was checkpointed (finite: the poisoned step 6 was skipped), nothing after the divergence.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4", "6"]


def test_sigterm_saves_the_current_step_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  base = [sys.executable, os.path.join(REPO, "train.py"), f"--workdir={workdir}", *TINY,
          "--config.train.checkpoint_every=25"]
  proc = subprocess.Popen(base + ["--config.train.max_steps=1000000"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 240
    while not (workdir / "checkpoints" / "25").exists():
      assert proc.poll() is None and time.time() < deadline, "training did not reach step 25"
      time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 0, stderr[-2000:]
  line = [l for l in stdout.splitlines() if l.startswith("SIGTERM: saved a checkpoint at step")][0]
  saved = int(line.split("step ")[1].split(" ")[0])
  assert saved > 25
  assert max(int(d) for d in os.listdir(workdir / "checkpoints")) == saved

  resumed = subprocess.run(base + [f"--config.train.max_steps={saved + 3}"], capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"{saved}/{saved + 3}" in resumed.stderr  # the progress bar starts at the saved step
  assert max(int(d) for d in os.listdir(workdir / "checkpoints")) == saved + 3
