"""train.py checks the held-out frames before the first step: a photo of the wrong size or a missing one is
reported at once, naming the file, and nothing is written."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import jaxnerf
from jaxnerf import config as config_lib
from jaxnerf.data import loaders
from jaxnerf.errors import DataError
from jaxnerf.run import train as train_lib
from test_transforms import write_capture


def blender_config(root):
  config = config_lib.base_config()
  config.data.data_dir = str(root)
  config.train.val_every = 0
  config.train.max_steps, config.train.batch_size = 1, 64  # without the check, a quick run that raises nothing
  config.model.mlp.depth, config.model.mlp.width = 2, 16
  return config


@pytest.fixture
def blender_scene(tmp_path):
  root = tmp_path / "scene"
  shutil.copytree(jaxnerf.DEMO_SCENE, root, ignore=shutil.ignore_patterns("val"))
  return root


def test_a_good_scene_passes(blender_scene):
  loaders.check_held_out(blender_config(blender_scene))


def test_a_test_photo_of_another_size_is_named_before_training(blender_scene, tmp_path):
  Image.new("RGBA", (50, 50)).save(blender_scene / "test" / "r_100.png")
  workdir = tmp_path / "run"
  with pytest.raises(DataError, match=r"test/r_100\.png: image is 50x50, expected 100x100"):
    train_lib.train_and_evaluate(blender_config(blender_scene), str(workdir))
  assert not workdir.exists()


def test_a_missing_or_broken_test_photo_is_named(blender_scene):
  os.remove(blender_scene / "test" / "r_25.png")
  with pytest.raises(DataError, match=r"test/r_25\.png: image file not found"):
    loaders.check_held_out(blender_config(blender_scene))
  (blender_scene / "test" / "r_25.png").write_bytes(b"not a png")
  with pytest.raises(DataError, match=r"test/r_25\.png: not a readable image"):
    loaders.check_held_out(blender_config(blender_scene))


def test_validation_frames_are_checked_when_training_validates(blender_scene):
  config = blender_config(blender_scene)
  config.train.val_every = 100
  with pytest.raises(DataError, match=r"val/r_0\.png: image file not found"):  # the fixture has no val photos
    loaders.check_held_out(config)


def test_a_held_out_photo_that_does_not_match_its_w_and_h(tmp_path):
  root = str(tmp_path / "capture")
  write_capture(root, [{} for _ in range(9)], fl_x=7.0, w=8, h=6)  # frames 0 and 8 are held out
  config = config_lib.base_config()
  config.data.dataset, config.data.data_dir = "transforms", root
  loaders.check_held_out(config)
  Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(os.path.join(root, "images", "frame_008.png"))
  with pytest.raises(DataError, match=r"frame 8 \(images/frame_008\.png\): the photo is 9x6 pixels, but 'w' says 8"):
    loaders.check_held_out(config)
