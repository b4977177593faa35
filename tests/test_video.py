"""render.py end to end: tiny runs on LLFF fern and the Blender demo, videos decoded and checked."""
import importlib.util
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import REPO, TINY, needs_shared_fern, write_llff_scene
from jaxnerf.run import video as video_lib
from jaxnerf.data import scene as scene_lib

FERN_CPU = os.path.join(REPO, "configs", "fern_cpu.py")


def run(script, *args):
  """Run a script; --config (absl needs it before its overrides) goes first if given."""
  config = [a for a in args if a.startswith("--config=")]
  rest = [a for a in args if not a.startswith("--config=")]
  return subprocess.run([sys.executable, os.path.join(REPO, script), *config, *TINY, *rest], capture_output=True,
                        text=True, timeout=300)


@pytest.fixture(scope="module")
def fern_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fern") / "run")
  result = run("train.py", f"--config={FERN_CPU}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr
  return workdir


def decode(path):
  frames = iio.imread(path, index=None)
  return frames[..., :3]


@needs_shared_fern
def test_fern_spiral_mp4(fern_run):
  result = run("render.py", f"--config={FERN_CPU}", f"--workdir={fern_run}", "--path=spiral", "--frames=4",
               "--factor=2")
  assert result.returncode == 0, result.stderr
  videos = os.path.join(fern_run, "videos")
  rgb, depth = decode(os.path.join(videos, "spiral_2.mp4")), decode(os.path.join(videos, "spiral_2_depth.mp4"))
  # 252x189 halved is 126x94 (94 is even, so nothing is cropped for H.264).
  assert rgb.shape == depth.shape == (4, 94, 126, 3)
  assert "126x94" in result.stdout
  assert rgb.std() > 0 and not np.array_equal(rgb[0], rgb[1])  # the camera moves


def test_demo_orbit_gif_and_bad_flags(tmp_path):
  workdir = str(tmp_path / "demo")
  assert run("train.py", f"--workdir={workdir}").returncode == 0
  result = run("render.py", f"--workdir={workdir}", "--frames=3", "--format=gif")
  assert result.returncode == 0, result.stderr
  frames = decode(os.path.join(workdir, "videos", "orbit_2.gif"))
  assert frames.shape == (3, 100, 100, 3)
  for flag, message in [("--path=circle", "--path: expected one of"), ("--frames=0", "--frames: expected a positive"),
                        ("--format=avi", "--format: expected one of")]:
    bad = run("render.py", f"--workdir={workdir}", flag)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), bad.stderr
  missing = run("render.py", f"--workdir={workdir}", "--step=1")
  assert missing.returncode == 2 and "no checkpoint of step 1 (there are: 2)" in missing.stderr
  spiral = run("render.py", f"--workdir={workdir}", "--path=spiral")
  assert spiral.returncode == 2 and "needs the scene depth bounds of an LLFF dataset" in spiral.stderr
  check_camera_path_file(workdir, tmp_path)


def check_camera_path_file(workdir, tmp_path):
  """A saved camera path from the first test view's camera to the second's over 1 s at 4 fps: 5 frames, the
  first the test path's first frame (same pose and field of view)."""
  from jaxnerf.data import loaders
  from jaxnerf.run import camera_path_files
  from jaxnerf.config import base_config
  config = base_config()
  views = loaders.load_views(config, "test")
  fov = np.degrees(2 * np.arctan(0.5 * views.height / views.focal))
  file = tmp_path / "fly.json"
  file.write_text(camera_path_files.to_json(views.cam_to_world[:2], [fov, fov], [0.0, 1.0], fps=4))
  result = run("render.py", f"--workdir={workdir}", f"--path={file}", "--format=gif")
  assert result.returncode == 0, result.stderr
  frames = decode(os.path.join(workdir, "videos", "fly_2.gif"))
  depth = decode(os.path.join(workdir, "videos", "fly_2_depth.gif"))
  assert frames.shape == depth.shape == (5, 100, 100, 3)
  assert run("render.py", f"--workdir={workdir}", "--path=test", "--frames=1", "--format=gif").returncode == 0
  test_frame = decode(os.path.join(workdir, "videos", "test_2.gif"))[0]
  assert np.abs(frames[0].astype(int) - test_frame).mean() < 2.0
  assert np.abs(frames[2].astype(int) - test_frame).mean() > 2.0  # the camera moves


class _Restored(Exception):
  pass


def test_render_builds_the_model_over_the_loaders_scene_box(tmp_path, rng, monkeypatch):
  """Rays in NDC fix the scene box of hash fields and of the occupancy grid, as in training; render.py must build
  the model with that box, not the config's default."""
  spec = importlib.util.spec_from_file_location("fern_cpu", FERN_CPU)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()  # an LLFF scene in NDC
  config.data.data_dir, config.data.factor = str(write_llff_scene(tmp_path / "scene", rng)), 2
  assert tuple(config.data.scene_box) != scene_lib.NDC_SCENE_BOX

  def restore_trained(config, workdir, scene, step):
    raise _Restored(tuple(scene.scene_box))

  monkeypatch.setattr(video_lib.state_lib, "restore_trained", restore_trained)
  with pytest.raises(_Restored) as restored:
    video_lib.render_video(config, str(tmp_path / "run"), path="orbit", num_frames=2)
  assert restored.value.args[0] == scene_lib.NDC_SCENE_BOX
