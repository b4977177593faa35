"""Run directories written before the package was regrouped (jaxnerf 0.1, tests/fixtures/runs_v0_1: a config.json
holding what the loader found, no scene.json) still evaluate and resume with today's code."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from conftest import REPO
from jaxnerf.data import scene as scene_lib
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.run import train as train_lib

sys.path.insert(0, os.path.join(REPO, "configs"))
import demo  # noqa: E402
import demo_fast  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "fixtures", "runs_v0_1")


def fixture_config(kind, max_steps):
  """The config those runs were trained with (tests/fixtures/runs_v0_1/README.md)."""
  config = demo.get_config() if kind == "classic" else demo_fast.get_config()
  config.train.checkpoint_every, config.train.batch_size, config.train.val_every = 2, 64, 0
  config.train.log_every, config.train.max_steps = 2, max_steps
  config.eval.stride, config.eval.lpips_net = 4, ""
  if kind == "classic":
    m = config.model
    m.mlp.depth, m.mlp.width, m.mlp.skip_layer, m.mlp.view_width = 2, 16, 1, 8
    m.hierarchical.num_coarse_samples, m.hierarchical.num_fine_samples = 8, 8
  else:
    m = config.model
    m.hash.num_levels, m.hash.log2_table_size, m.hash.max_resolution = 4, 8, 64
    m.proposal.num_levels, m.proposal.log2_table_size = 2, 8
    m.proposal.num_samples, m.proposal.num_final_samples = (16,), 8
    config.occupancy.resolution, config.occupancy.cells_per_update = 16, 1024
  return config


@pytest.mark.parametrize("kind", ["classic", "fast"])
def test_old_run_evaluates_then_resumes(tmp_path, kind):
  workdir = str(tmp_path / kind)
  shutil.copytree(os.path.join(FIXTURES, kind), workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    old_config = json.load(f)
  assert "scene_from_world" in old_config["data"]["transforms"]  # written by the old code

  before = eval_lib.evaluate(fixture_config(kind, 2), workdir)
  assert before["step"] == 2 and len(before["per_image"]) == 2
  assert all(np.isfinite(r["psnr"]) for r in before["per_image"])
  # The old run has no scene.json: evaluation describes the scene from the loader, and records it with the metrics.
  assert not os.path.exists(os.path.join(workdir, "scene.json"))
  evaluated = scene_lib.load(os.path.join(workdir, "eval"))
  assert (evaluated.near, evaluated.far) == (2.0, 6.0) and evaluated.scene_box == (-1.5,) * 3 + (1.5,) * 3

  state = train_lib.train_and_evaluate(fixture_config(kind, 4), workdir)
  assert int(state.step) == 4  # resumed from step 2, not started over
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
  with open(os.path.join(workdir, "config.json")) as f:
    new_config = json.load(f)
  assert "scene_from_world" not in new_config["data"]["transforms"]  # the config keeps what the user set
  assert not scene_lib.load(workdir).differences(evaluated)  # the same facts (and now the training frames)
  after = eval_lib.evaluate(fixture_config(kind, 4), workdir)
  assert after["step"] == 4
