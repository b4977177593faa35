import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import jaxnerf
from jaxnerf.data import blender
from jaxnerf.data import images
from jaxnerf.errors import DataError
from conftest import SHARED_LEGO, needs_shared_lego


def test_demo_scene_loads_with_paper_conventions():
  test = blender.load_split(jaxnerf.DEMO_SCENE, "test")
  assert test.names == [f"test/r_{i}" for i in range(0, 200, 25)]
  assert test.images.shape == (8, 100, 100, 3) and test.images.dtype == np.float32
  with open(os.path.join(jaxnerf.DEMO_SCENE, "transforms_test.json")) as f:
    angle = json.load(f)["camera_angle_x"]
  np.testing.assert_allclose(test.focal, 0.5 * 100 / np.tan(0.5 * angle))
  assert (test.near, test.far) == (2.0, 6.0)
  # White background: the corners of these renders are empty space.
  np.testing.assert_allclose(test.images[:, 0, 0], 1.0)
  train = blender.load_split(jaxnerf.DEMO_SCENE, "train")
  assert len(train) == 100


@needs_shared_lego
def test_demo_scene_matches_full_lego_downsampled():
  demo = blender.load_split(jaxnerf.DEMO_SCENE, "test", background=(0.0, 0.0, 0.0))
  full = blender.load_split(SHARED_LEGO, "test", factor=8, stride=25, background=(0.0, 0.0, 0.0))
  assert demo.names == full.names
  np.testing.assert_allclose(demo.images, full.images, atol=1.5 / 255)
  np.testing.assert_array_equal(demo.cam_to_world, full.cam_to_world)
  np.testing.assert_allclose(demo.focal, full.focal)


def test_downsampling_averages_premultiplied_colour():
  rgba = np.zeros((2, 2, 4), np.float32)
  rgba[0, 0] = [1.0, 0.0, 0.0, 1.0]  # opaque red
  rgba[0, 1] = [0.0, 1.0, 0.0, 0.0]  # fully transparent green: must not tint the result
  rgba[1, 0] = [0.0, 0.0, 1.0, 0.5]  # half-transparent blue
  premultiplied = images.downsample_premultiplied(rgba, 2)
  np.testing.assert_allclose(premultiplied[0, 0], [0.25, 0.0, 0.125, 0.375])
  white = images.composite_on_background(premultiplied, (1.0, 1.0, 1.0))
  np.testing.assert_allclose(white[0, 0], [0.25 + 0.625, 0.625, 0.125 + 0.625])
  black = images.composite_on_background(premultiplied, (0.0, 0.0, 0.0))
  np.testing.assert_allclose(black[0, 0], [0.25, 0.0, 0.125])


def copy_scene(tmp_path, splits=("test",)):
  root = tmp_path / "scene"
  root.mkdir()
  for split in splits:
    shutil.copy(os.path.join(jaxnerf.DEMO_SCENE, f"transforms_{split}.json"), root)
    shutil.copytree(os.path.join(jaxnerf.DEMO_SCENE, split), root / split)
  return root


def rewrite_json(root, edit):
  path = root / "transforms_test.json"
  meta = json.loads(path.read_text())
  edit(meta)
  path.write_text(json.dumps(meta))


def expect_error(match, *args, **kwargs):
  with pytest.raises(DataError, match=match):
    blender.load_split(*args, **kwargs)


def test_errors_name_the_file_and_the_problem(tmp_path):
  expect_error("data directory not found", str(tmp_path / "missing"), "test")
  root = copy_scene(tmp_path)
  expect_error("transforms_train.json: file not found", str(root), "train")
  expect_error("does not divide the image size 100x100", str(root), "test", factor=3)

  (root / "test" / "r_25.png").unlink()
  expect_error("r_25.png: image file not found", str(root), "test")
  (root / "test" / "r_25.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  expect_error("r_25.png: not a readable image", str(root), "test")
  Image.new("RGBA", (50, 50)).save(root / "test" / "r_25.png")
  expect_error("r_25.png: image is 50x50, expected 100x100", str(root), "test")


def test_bad_json_and_poses(tmp_path):
  root = copy_scene(tmp_path)
  good = (root / "transforms_test.json").read_text()
  (root / "transforms_test.json").write_text(good[:-20])
  expect_error("transforms_test.json: malformed JSON", str(root), "test")
  (root / "transforms_test.json").write_text(good)
  rewrite_json(root, lambda m: m.update(frames=[]))
  expect_error("split 'test' has no frames", str(root), "test")
  (root / "transforms_test.json").write_text(good)
  rewrite_json(root, lambda m: m["frames"][1]["transform_matrix"][0].__setitem__(0, float("nan")))
  expect_error(r"frame 1 \(./test/r_25\): transform_matrix has non-finite", str(root), "test")
  (root / "transforms_test.json").write_text(good)
  rewrite_json(root, lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(0, 2.0))
  expect_error("frame 2 .* not a rigid transform", str(root), "test")
