"""Videos along a camera path from the latest checkpoint of a run: colour and depth, as mp4 (H.264) or GIF."""
import contextlib
import os

import imageio.v2 as imageio
import numpy as np
import tqdm

from jaxnerf import config as config_lib
from jaxnerf import storage
from jaxnerf.core import camera_paths
from jaxnerf.core import poses as poses_lib
from jaxnerf.data import images
from jaxnerf.data import loaders
from jaxnerf.errors import ConfigError
from jaxnerf.run import camera_path_files
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib

PATHS = ("auto", "spiral", "orbit", "test")
FORMATS = ("mp4", "gif")


def path_poses(kind, config, num_frames):
  """The resolved path kind, its [num_frames, 3, 4] camera poses, and the Views whose camera renders them.

  "spiral" (forward-facing scenes) and "orbit" (inward-facing ones) are built from the training poses; "test"
  walks through the test views (repeating them if needed); "auto" is the spiral for forward-facing scenes and the
  orbit otherwise.
  """
  if kind not in PATHS:
    raise ConfigError(f"--path: expected one of {PATHS} or a camera path FILE.json, got {kind!r}")
  if kind == "test":
    views = loaders.load_views(config, "test")
    return kind, views.cam_to_world[np.arange(num_frames) % len(views)], views
  views = loaders.load_views(config, "train")
  if kind == "auto":  # forward-facing: NDC, or axes within a narrow cone with depth bounds (LLFF, COLMAP points)
    forward = views.bounds is not None and poses_lib.faces_forward(views.cam_to_world.astype(np.float64))
    kind = "spiral" if views.ndc or forward else "orbit"
  if kind == "spiral":
    if views.bounds is None:
      raise ConfigError(f"--path=spiral: needs the scene depth bounds of an LLFF dataset or of COLMAP's points "
                        f"(process_data.py); config.data.dataset is {config.data.dataset!r} (use --path=orbit)")
    return kind, camera_paths.spiral_path(views.cam_to_world.astype(np.float64), views.bounds, num_frames), views
  return kind, camera_paths.orbit_path(views.cam_to_world.astype(np.float64), num_frames), views


def keyframe_path(file, config):
  """A camera path file's name (the file name without .json), its [F, 3, 4] interpolated poses, [F] vertical
  fields of view in radians, frames per second, and the training Views (whose scene renders them)."""
  poses, fov_degrees, times, fps = camera_path_files.load(file)
  poses, fov_degrees = camera_paths.interpolate_keyframes(poses, fov_degrees, times, fps)
  name = os.path.splitext(os.path.basename(str(file)))[0]
  return name, poses, np.radians(fov_degrees), fps, loaders.load_views(config, "train")


def even_crop(frame):
  """H.264 in 4:2:0 colour needs even sizes: drop a last odd row or column."""
  return frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2]


def open_writer(path, fps):
  if path.endswith(".gif"):
    return imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
  # yuv420p plays everywhere; macro_block_size=1 keeps the rendered size (no rescaling to multiples of 16).
  return imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p", quality=8,
                            macro_block_size=1)


def render_video(config, workdir, path="auto", num_frames=120, fps=30, factor=1, video_format="mp4", step=None):
  """Render a camera path with the latest checkpoint in workdir (or the one of `step`) into
  DIR/videos/<path>_<step>.<format> (colour) and <path>_<step>_depth.<format> (depth: turbo colours over
  the first frame's range, near red, far blue, empty white; see rendering.depth_to_image).

  `path` is one of PATHS or a camera path file (FILE.json, camera_path_files.py: its frames, fields of view and
  fps replace num_frames and fps; the videos are named after the file), rendered at the training image size.

  Frames are rendered one at a time in chunks of config.eval.chunk rays, and streamed to the files. All
  processes of a multi-process run render together (render.py); only process 0 writes.

  Returns:
    dict with the paths written ("rgb", "depth"), "frames", "width" and "height" of the files, and "step".
  """
  config_lib.validate(config)
  checks = [(num_frames > 0, "--frames", f"a positive number, got {num_frames}"),
            (fps > 0, "--fps", f"a positive number, got {fps}"),
            (factor >= 1, "--factor", f"an integer >= 1, got {factor}"),
            (video_format in FORMATS, "--format", f"one of {FORMATS}, got {video_format!r}")]
  for ok, flag, expected in checks:
    if not ok:
      raise ConfigError(f"{flag}: expected {expected}")
  fovs = None  # a camera path file's, else the views' own camera
  if path.endswith(".json"):
    path, poses, fovs, fps, views = keyframe_path(path, config)
  else:
    path, poses, views = path_poses(path, config, num_frames)
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views))
  model, state = state_lib.restore_trained(config, workdir, scene, step)
  render_chunk = rendering.make_render_chunk(model, scene, config)
  variables = rendering.render_variables(state, config, scene)

  video_dir = storage.join(workdir, "videos")
  stem = storage.join(video_dir, f"{path}_{int(state.step)}")
  outputs = {"rgb": f"{stem}.{video_format}", "depth": f"{stem}_depth.{video_format}"}
  lead = workdir_lib.is_lead_process()
  if lead:
    storage.makedirs(video_dir)
  # Written under temporary names, renamed (or uploaded) when every frame is in: a stopped render leaves no video that looks
  # complete.
  with contextlib.ExitStack() as files:
    partial = {name: files.enter_context(workdir_lib.written_in_place(file)) for name, file in outputs.items()} \
        if lead else {}
    writers = {name: open_writer(file, fps) for name, file in partial.items()}
    depth_range = None  # the first frame's, kept: colours that do not flicker
    try:
      for i, pose in enumerate(tqdm.tqdm(poses, unit="frame", desc=f"rendering {path} path", dynamic_ncols=True,
                                         disable=not lead)):
        rays = views.camera_rays(pose, factor) if fovs is None else \
            views.pinhole_rays(pose, views.width // factor, views.height // factor, fovs[i])
        out = rendering.render_rays(render_chunk, variables, rays, config.eval.chunk)
        rgb = images.to_uint8(out["rgb"])
        depth, depth_range = rendering.depth_to_image(out, config, depth_range)
        if video_format == "mp4":
          rgb, depth = even_crop(rgb), even_crop(depth)
        if lead:
          writers["rgb"].append_data(rgb)
          writers["depth"].append_data(depth)
    finally:
      for writer in writers.values():
        writer.close()
  return dict(outputs, frames=len(poses), width=rgb.shape[1], height=rgb.shape[0], step=int(state.step))
