"""process_data.py: COLMAP models converted to transforms.json, and its one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from jaxnerf.data import transforms

pycolmap = pytest.importorskip("pycolmap")


def run(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, "process_data.py"), *args], capture_output=True,
                        text=True, timeout=300)


def test_converted_model_loads_like_the_model_itself(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  reconstruction = pycolmap.Reconstruction()
  reconstruction.add_camera_with_trivial_rig(pycolmap.Camera(model="SIMPLE_RADIAL", width=16, height=12,
                                                             params=[20.0, 8.0, 6.0, 0.03], camera_id=1))
  rng = np.random.default_rng(0)
  for image_id in range(1, 4):
    name = f"p{image_id}.png"
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(photos / name)
    pose = np.concatenate([np.eye(3), [[image_id], [0.0], [0.0]]], axis=1)
    reconstruction.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=1, image_id=image_id),
                                                pycolmap.Rigid3d(pose))
  model = tmp_path / "model"
  model.mkdir()
  reconstruction.write(str(model))
  scene = tmp_path / "scene"
  result = run(f"--images={photos}", f"--colmap_model={model}", f"--output={scene}")
  assert result.returncode == 0, result.stderr[-2000:]
  document = json.loads((scene / "transforms.json").read_text())
  assert document["camera_model"] == "OPENCV" and document["fl_x"] == document["fl_y"] == 20.0
  assert document["k1"] == 0.03 and len(document["frames"]) == 3
  assert Image.open(scene / "images_2" / "p1.png").size == (8, 6)
  converted = transforms.load_split(str(scene), "train", hold=1000, normalize=False, near=0.1, far=5.0)
  (scene / "sparse").mkdir()
  os.symlink(model, scene / "sparse" / "0")
  os.remove(scene / "transforms.json")
  direct = transforms.load_split(str(scene), "train", hold=1000, normalize=False, near=0.1, far=5.0)
  np.testing.assert_array_equal(converted.cam_to_world, direct.cam_to_world)
  np.testing.assert_array_equal(converted.intrinsics, direct.intrinsics)
  # COLMAP's camera at x = i, looking down +z: OpenGL centre -R^T t, back axis -z.
  np.testing.assert_allclose(direct.cam_to_world[:, :, 3], [[-2, 0, 0], [-3, 0, 0]])
  np.testing.assert_allclose(direct.cam_to_world[:, :, 2], [[0, 0, -1], [0, 0, -1]])


@pytest.mark.parametrize("photos, message", [
    (0, "no photos"),
    (3, "only 0 of 3 photos registered"),
])
def test_one_line_errors(tmp_path, photos, message):
  folder = tmp_path / "photos"
  folder.mkdir()
  rng = np.random.default_rng(1)
  for i in range(photos):  # noise: nothing to match
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"n{i}.png")
  result = run(f"--images={folder}", f"--output={tmp_path / 'scene'}")
  assert result.returncode == 2
  assert result.stderr.strip().startswith("error: ") and message in result.stderr, result.stderr[-2000:]
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
