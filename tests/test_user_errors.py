"""Bad input: one clear line naming the file or field, exit code 2, no traceback, nothing in the workdir changed."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import jaxnerf
from jaxnerf import config as config_lib
from jaxnerf.run import train as train_lib
from jaxnerf.errors import ConfigError
from conftest import REPO
from conftest import TINY

def tiny_config():
  sys.path.insert(0, os.path.join(REPO, "configs"))
  import demo
  config = demo.get_config()
  for arg in TINY:
    path, value = arg[len("--config."):].split("=")
    *groups, field = path.split(".")
    node = config
    for group in groups:
      node = node[group]
    node[field] = type(node[field])(value)
  return config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  train_lib.train_and_evaluate(tiny_config(), workdir)
  return workdir


@pytest.fixture
def scene(tmp_path):
  root = tmp_path / "scene"
  shutil.copytree(jaxnerf.DEMO_SCENE, root, ignore=shutil.ignore_patterns("val"))
  return root


def snapshot(directory):
  result = {}
  for dirpath, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        result[path] = hashlib.sha256(f.read()).hexdigest()
  return result


def run_cli(script, workdir, *args, env=None):
  cmd = [sys.executable, os.path.join(REPO, script), f"--workdir={workdir}", *TINY, *args]
  return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def expect_user_error(script, workdir, expected, *args, env=None):
  before = snapshot(workdir) if os.path.isdir(workdir) else None
  result = run_cli(script, workdir, *args, env=env)
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and expected in last, last
  if before is not None:
    assert snapshot(workdir) == before
  return last


def edit_json(path, edit):
  meta = json.loads(path.read_text())
  edit(meta)
  path.write_text(json.dumps(meta))


def set_pose_entry(frame, value):
  return lambda meta: meta["frames"][frame]["transform_matrix"][0].__setitem__(0, value)


DATA_CASES = {
    "missing data directory": (lambda root: shutil.rmtree(root), "scene: data directory not found"),
    "missing transforms JSON": (lambda root: (root / "transforms_train.json").unlink(),
                                "transforms_train.json: file not found"),
    "malformed JSON": (lambda root: (root / "transforms_train.json").write_text('{"frames": ['),
                       "transforms_train.json: malformed JSON"),
    "missing image": (lambda root: (root / "train" / "r_7.png").unlink(), "r_7.png: image file not found"),
    "corrupt image": (lambda root: (root / "train" / "r_7.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0"),
                      "r_7.png: not a readable image"),
    "truncated image": (lambda root: (root / "train" / "r_7.png").write_bytes(
        (root / "train" / "r_7.png").read_bytes()[:300]), "r_7.png: not a readable image"),
    "mismatched sizes": (lambda root: Image.new("RGBA", (50, 40)).save(root / "train" / "r_7.png"),
                         "r_7.png: image is 50x40, expected 100x100"),
    "non-finite pose": (lambda root: edit_json(root / "transforms_train.json", set_pose_entry(3, float("nan"))),
                        "frame 3 (./train/r_3): transform_matrix has non-finite entries"),
    "non-rigid pose": (lambda root: edit_json(root / "transforms_train.json", set_pose_entry(3, 2.0)),
                       "frame 3 (./train/r_3): transform_matrix is not a rigid transform"),
    "empty split": (lambda root: edit_json(root / "transforms_train.json", lambda m: m.update(frames=[])),
                    "transforms_train.json: split 'train' has no frames"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data(case, scene, trained_run):
  break_scene, expected = DATA_CASES[case]
  break_scene(scene)
  expect_user_error("train.py", trained_run, expected, f"--config.data.data_dir={scene}")


def test_llff_poses_bounds_of_the_wrong_shape(tmp_path, trained_run):
  root = tmp_path / "llff"
  (root / "images").mkdir(parents=True)
  np.save(root / "poses_bounds.npy", np.zeros((3, 15)))
  expect_user_error("train.py", trained_run, "poses_bounds.npy: expected an array of shape [num_images, 17] (a 3x5 "
                    "pose and 2 bounds per row), got shape [3, 15]", "--config.data.dataset=llff",
                    f"--config.data.data_dir={root}", "--config.data.factor=1")


def test_bad_config_values(trained_run):
  expect_user_error("train.py", trained_run, "--config.train.no_such_field: no such config field",
                    "--config.train.no_such_field=1")
  expect_user_error("train.py", trained_run, "--config.train.batch_size=many: invalid literal for int()",
                    "--config.train.batch_size=many")
  expect_user_error("train.py", trained_run, "downsampling factor 3 does not divide the image size 100x100",
                    "--config.data.factor=3")
  expect_user_error("eval.py", trained_run, "config.data.near/far: expected 0 <= near < far",
                    "--config.data.near=7")
  # A typo on resuming: the run's config.json stays as it was.
  expect_user_error("train.py", trained_run, "config.train.batching: expected one of ('all_images', "
                    "'single_image'), got 'single'", "--config.train.batching=single")
  expect_user_error("train.py", trained_run, "config.data.data_dir: expected the blender scene's folder "
                    "(--config.data.data_dir=PATH), got none", "--config.data.data_dir=")


@pytest.mark.parametrize("field, value, expected", [
    ("precrop_fraction", 0.0, "config.train.precrop_steps/precrop_fraction: expected 0 or more steps and a "
                              "fraction in (0, 1], got 500 and 0.0"),
    ("precrop_fraction", 1.5, "got 500 and 1.5"),
    ("keep_checkpoints", 0, "config.train.keep_checkpoints: expected at least 1, got 0"),
])
def test_training_settings_are_checked(field, value, expected):
  config = tiny_config()
  config.train[field] = value
  with pytest.raises(ConfigError, match=re.escape(expected)):
    config_lib.validate(config, 1)


def test_batch_size_must_divide_over_devices(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  expect_user_error("train.py", str(tmp_path / "run"),
                    "config.train.batch_size: expected a positive multiple of the 2 device(s) the batch is split "
                    "over, got 63", "--config.train.batch_size=63", env=env)


def test_eval_runs_on_devices_that_do_not_divide_the_training_batch(trained_run):
  # train.* settings are checked against the devices that train; eval may run on other machines.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = run_cli("eval.py", trained_run, "--config.train.batch_size=63", "--config.eval.lpips_net=", env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "mean PSNR" in result.stdout


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  expect_user_error("train.py", str(blocker / "run"), "cannot write to the workdir")


def test_incompatible_model_and_checkpoint(trained_run, tmp_path):
  expect_user_error("train.py", trained_run, "has another model (model.mlp.width=16 there, 32 here)",
                    "--config.model.mlp.width=32")
  expect_user_error("eval.py", trained_run, "has another model", "--config.model.hierarchical.num_fine_samples=8")
  # The occupancy grid is part of the checkpoint.
  expect_user_error("eval.py", trained_run, "occupancy.resolution=128 there, 64 here",
                    "--config.occupancy.resolution=64")
  # Without the saved config, the checkpoint itself is checked against the model.
  copy = str(tmp_path / "copy")
  shutil.copytree(trained_run, copy)
  os.remove(os.path.join(copy, "config.json"))
  expect_user_error("train.py", copy, "checkpoint does not fit this config's model", "--config.model.mlp.width=32")


def test_eval_without_checkpoint(tmp_path):
  expect_user_error("eval.py", str(tmp_path / "empty"), "no checkpoint to render")
  assert not os.path.exists(tmp_path / "empty")
