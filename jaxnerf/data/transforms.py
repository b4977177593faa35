"""Captures described by one transforms.json (Instant-NGP and nerfstudio), or by a COLMAP model in sparse/0 (read
as the same document, see colmap.py), with real camera models.

The file holds global camera keys and a list of `frames`, each with a `file_path` and a 4x4 camera-to-world
`transform_matrix` in the OpenGL convention of rays.py (both tools write that). Camera keys, global or per frame
(a frame's own keys override the global ones):
  - focal length: `fl_x` / `fl_y` in pixels (one of them is enough), else `camera_angle_x` / `camera_angle_y`;
  - `cx`, `cy`: principal point in pixels (default the image centre); `w`, `h`: photo size in pixels;
  - `camera_model`: PINHOLE, SIMPLE_PINHOLE, OPENCV or OPENCV_FISHEYE (Instant-NGP writes none: OPENCV, or
    OPENCV_FISHEYE with `is_fisheye`), with distortion keys `k1`, `k2`, `k3`, `k4`, `p1`, `p2`.
Split: nerfstudio's `train_filenames` / `test_filenames` (and `val_filenames`) when present, else every `hold`-th
frame in file order (0, hold, 2 hold, ...) is held out for test and val.

The scene is normalised (poses.normalize_scene) so the mean camera up is +z, the capture is centred and the farthest
camera is at distance 1; near and far come from the camera layout, or from the depths of COLMAP's points
(`points_depth` of each frame, which process_data.py writes) when present. The transform is recorded in the
run's config.json (data.transforms.scene_from_world) so that outputs map back to the file's frame. Instant-NGP's
`scale`, `offset` and `aabb_scale` (its own scaling into its unit cube, and the size of its box) and nerfstudio's
`applied_transform` (already applied to the transform matrices) are therefore not needed and are ignored.
"""
import math
import os

import numpy as np

from jaxnerf import storage
from jaxnerf.core import rays as rays_lib
from jaxnerf.data import colmap
from jaxnerf.core import poses as poses_lib
from jaxnerf.data.images import composite_on_background
from jaxnerf.data.images import downsample_premultiplied
from jaxnerf.data.images import read_rgba
from jaxnerf.data.images import read_size
from jaxnerf.data.scene_files import frame_pose
from jaxnerf.data.scene_files import is_number
from jaxnerf.data.scene_files import read_json
from jaxnerf.data.scene_files import scene_relative_path
from jaxnerf.data.scene_files import short_repr
from jaxnerf.data.views import Views
from jaxnerf.data.views import share_of
from jaxnerf.errors import ConfigError
from jaxnerf.errors import DataError

FILE_NAME = "transforms.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")
CAMERA_MODELS = {"PINHOLE": "pinhole", "SIMPLE_PINHOLE": "pinhole", "OPENCV": "opencv",
                 "OPENCV_FISHEYE": "opencv_fisheye"}
CAMERA_KEYS = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y", "cx", "cy", "w", "h", "camera_model",
               "is_fisheye") + rays_lib.DISTORTION_KEYS
CENTRES = ("auto", "axes", "cameras")
# Near and far in the normalised scene (cameras within distance 1 of the centre): an inward-facing capture's
# content lies within the unit ball, a forward-facing one's up to a few camera spreads in front of the cameras.
INWARD_BOUNDS = (0.05, 2.0)
FORWARD_BOUNDS = (0.05, 10.0)


def _number(camera, key, where, minimum=None, maximum=None):
  value = camera[key]
  if not is_number(value) or abs(value) > 1e30:
    raise DataError(f"{where}: '{key}' must be a finite number, got {short_repr(value)}")
  if (minimum is not None and value <= minimum) or (maximum is not None and value >= maximum):
    raise DataError(f"{where}: '{key}' must be between {minimum} and {maximum}, got {value!r}")
  return float(value)


def camera_of(camera, width, height, where, size_tolerance=1):
  """Intrinsics of one frame from its camera keys (global ones overridden by the frame's).

  Args:
    camera: dict of the camera keys present.
    width, height: the photo's size in pixels, which `w` and `h` (when given) must equal (to within
      `size_tolerance` pixels, for copies downscaled with rounding)
    where: "<file>: frame i (<file_path>)" for messages.

  Returns:
    intrinsics [4] (fx, fy, cx, cy) in pixels of the photo, distortion [6] (rays.DISTORTION_KEYS), model name.
  """
  for key, actual in (("w", width), ("h", height)):
    if key in camera and (not is_number(camera[key]) or abs(camera[key] - actual) >= size_tolerance):
      raise DataError(f"{where}: the photo is {width}x{height} pixels, but '{key}' says {short_repr(camera[key])}")
  if "fl_x" in camera or "fl_y" in camera:
    fx = _number(camera, "fl_x" if "fl_x" in camera else "fl_y", where, minimum=0)
    fy = _number(camera, "fl_y", where, minimum=0) if "fl_y" in camera else fx
  elif "camera_angle_x" in camera or "camera_angle_y" in camera:
    fx = fy = None
    if "camera_angle_x" in camera:
      fx = 0.5 * width / math.tan(0.5 * _number(camera, "camera_angle_x", where, 0, math.pi))
    if "camera_angle_y" in camera:
      fy = 0.5 * height / math.tan(0.5 * _number(camera, "camera_angle_y", where, 0, math.pi))
    fx, fy = fx or fy, fy or fx
  else:
    raise DataError(f"{where}: the focal length is missing (expected 'fl_x'/'fl_y' in pixels or "
                    "'camera_angle_x'/'camera_angle_y' in radians)")
  cx = _number(camera, "cx", where) if "cx" in camera else width / 2
  cy = _number(camera, "cy", where) if "cy" in camera else height / 2
  distortion = np.array([_number(camera, k, where) if k in camera else 0.0 for k in rays_lib.DISTORTION_KEYS])
  if "camera_model" in camera:
    name = camera["camera_model"]
    if not isinstance(name, str) or name.upper() not in CAMERA_MODELS:
      raise DataError(f"{where}: 'camera_model' must be one of {', '.join(CAMERA_MODELS)}, got {short_repr(name)}")
    model = CAMERA_MODELS[name.upper()]
  else:
    model = "opencv_fisheye" if camera.get("is_fisheye") is True else "opencv"
  if model == "pinhole" and np.any(distortion):
    raise DataError(f"{where}: a {camera['camera_model']} camera has no distortion, but distortion keys are set")
  if model == "opencv" and not np.any(distortion):
    model = "pinhole"
  return np.array([fx, fy, cx, cy]), distortion, model


def image_path_of(data_dir, relative_path, factor):
  """The photo to read for a frame, and the downsampling still to apply to it: nerfstudio's images_{factor}/ copy
  when the path starts with images/ and the copy exists, else the file itself (with .png, .jpg or .jpeg appended
  when the path has no extension and the bare name is missing)."""
  candidates = [relative_path]
  parts = relative_path.split(os.sep, 1)
  if factor > 1 and parts[0] == "images" and len(parts) == 2:
    candidates.insert(0, os.path.join(f"images_{factor}", parts[1]))
  for candidate in candidates:
    path = storage.join(data_dir, candidate)
    options = [path] + ([path + ext for ext in IMAGE_EXTENSIONS] if not os.path.splitext(path)[1] else [])
    for option in options:
      if storage.isfile(option):
        return option, 1 if candidate != relative_path else factor
  return storage.join(data_dir, relative_path), factor  # read_rgba names it as not found


def split_of(meta, names, split, hold, json_path):
  """Indices of the frames of `split` among `names` (file paths without extensions): the file's
  {split}_filenames list when it has one, else the hold-out rule (val is the test split)."""
  key = f"{'test' if split == 'val' and 'val_filenames' not in meta else split}_filenames"
  if key in meta or "train_filenames" in meta or "test_filenames" in meta:
    listed = meta.get(key)
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
      raise DataError(f"{json_path}: '{key}' must be a list of file paths, like 'train_filenames'")
    wanted = {os.path.splitext(os.path.normpath(n))[0] for n in listed}
    return [i for i, name in enumerate(names) if name in wanted]
  held_out = np.arange(len(names)) % hold == 0
  return list(np.flatnonzero(~held_out if split == "train" else held_out))


def read_frames(data_dir):
  """The scene's description (its path, parsed content, frames and global camera keys), checked for shape:
  transforms.json, or else a COLMAP model in sparse/0 with its photos in images/."""
  json_path = storage.join(data_dir, FILE_NAME)
  model_dir = storage.join(data_dir, "sparse", "0")
  if not storage.exists(json_path) and storage.isdir(model_dir):
    meta = colmap.reconstruction_document(colmap.read_model(model_dir), "images", where=model_dir)
    return model_dir, meta, meta["frames"], {k: meta[k] for k in CAMERA_KEYS if k in meta}
  meta = read_json(json_path, "an Instant-NGP or nerfstudio transforms.json (or a COLMAP model in sparse/0)")
  if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
    raise DataError(f"{json_path}: expected an object with a list of 'frames'")
  if not meta["frames"]:
    raise DataError(f"{json_path}: 'frames' is empty (expected one entry per photo)")
  for i, frame in enumerate(meta["frames"]):
    if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
      raise DataError(f"{json_path}: frame {i} needs 'file_path' and a 4x4 'transform_matrix'")
  return json_path, meta, meta["frames"], {k: meta[k] for k in CAMERA_KEYS if k in meta}


def points_depths(frames):
  """[N, 2] near and far depths of the 3D points each frame sees (`points_depth`, written from COLMAP models),
  or None unless every frame has a well-formed pair."""
  pairs = [frame.get("points_depth") for frame in frames]
  if not all(isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p) and 0 < p[0] < p[1] < 1e30
             for p in pairs):
    return None
  return np.asarray(pairs, np.float64)


def factor_for_long_side(data_dir, path, camera, long_side):
  """The integer downsampling factor (at least 1) that brings a photo's long side nearest `long_side` pixels, from
  its camera keys `w` and `h` when both are numbers, else from the photo at `path` (relative to data_dir)."""
  if is_number(camera.get("w")) and is_number(camera.get("h")):
    size = max(camera["w"], camera["h"])
  else:
    size = max(read_rgba(image_path_of(data_dir, path, 1)[0]).shape[:2])
  return max(1, round(size / long_side))


def check_settings(data_dir, hold, centre):
  """DataError or ConfigError for a missing scene folder or an allowed value out of range."""
  if not storage.isdir(data_dir):
    raise DataError(f"{data_dir}: data directory not found")
  if hold < 2:
    raise ConfigError(f"config.data.transforms.hold: expected an integer >= 2, got {hold}")
  if centre not in CENTRES:
    raise ConfigError(f"config.data.transforms.centre: expected one of {CENTRES}, got {centre!r}")


def scene_frame(all_poses, frames, normalize, centre, near, far):
  """The scene's frame and ray bounds: (scene_from_world [4, 4], poses [N, 3, 4] in it, COLMAP's points' depth
  range of each view [N, 2] in it or None, near, far). Negative near or far come from the camera layout, or from
  COLMAP's points when there are any (normalised scenes only)."""
  if not normalize and (near < 0 or far < 0):
    raise ConfigError("config.data.transforms.near/far: set both (>= 0) when data.transforms.normalize is False")
  scene_from_world = np.eye(4)
  depths = points_depths(frames)  # also the scene depth bounds of the views, for spiral video paths
  if normalize:
    scene_from_world, all_poses = poses_lib.normalize_scene(all_poses, centre)
    auto_near, auto_far = INWARD_BOUNDS if poses_lib.axes_are_convergent(all_poses) else FORWARD_BOUNDS
    if depths is not None:  # COLMAP's points: a margin around the depths they are seen at
      depths = depths * np.cbrt(np.linalg.det(scene_from_world[:3, :3]))
      auto_near, auto_far = 0.5 * depths[:, 0].min(), 1.5 * depths[:, 1].max()
    near, far = (near if near >= 0 else auto_near), (far if far >= 0 else auto_far)
  if not near < far:
    raise ConfigError(f"config.data.transforms.near/far: expected near < far, got {near} and {far}")
  return scene_from_world, all_poses, depths, near, far


def one_camera_model(models, json_path):
  """The one camera model of a split's frames (a set of names); DataError if they mix models."""
  if models == {"pinhole", "opencv"}:  # distortion-free frames of an OpenCV camera are pinhole frames of it
    models = {"opencv"}
  if len(models) > 1:
    raise DataError(f"{json_path}: frames mix the camera models {sorted(models)}; expected one")
  return next(iter(models))


def load_split(data_dir, split, factor=1, background=(1.0, 1.0, 1.0), hold=8, normalize=True, centre="auto",
               near=-1.0, far=-1.0, stride=1, pixel_center=True, long_side=0, check_only=False, share=None):
  """Load one split ("train", "val" or "test") of a transforms.json capture.

  Args:
    data_dir: folder holding transforms.json and the photos it names.
    factor: integer downsampling (nerfstudio's images_{factor}/ copies when present, else area averaging).
    background: RGB that transparent pixels are composited onto.
    hold: every hold-th frame is held out for test and val, when the file lists no split.
    normalize: orient, centre and scale the poses (else they are used as the file gives them).
    centre: "auto", "axes" or "cameras" (see poses.normalize_scene).
    near, far: ray bounds; negative: from the camera layout (normalised scenes only).
    stride: keep every stride-th view of the split.
    long_side: when positive, replaces `factor` by the one that brings the first frame's long side nearest this
      many pixels (factor_for_long_side); the last rows and columns that do not fill a factor x factor block are
      dropped (pixel coordinates start at the top left corner, so the intrinsics stay exact).
    check_only: check every frame of the split (pose, camera keys, its photo's header: readable, of the size its
      w and h give) and return None, without decoding the photos.
    share: (process index, process count): decode only that process's share of the photos (views.share_of); the
      others' are read for their size alone.

  Returns:
    Views with per-view intrinsics and lens distortion, `scene_from_world` [4, 4] (the normalisation),
    `split_names` (the frames of each split) and, from COLMAP's points, `bounds` (each view's depth range).
  """
  check_settings(data_dir, hold, centre)
  json_path, meta, frames, global_camera = read_frames(data_dir)
  paths, all_poses = [], []
  for i, frame in enumerate(frames):
    paths.append(scene_relative_path(frame["file_path"], f"{json_path}: frame {i}: 'file_path'"))
    all_poses.append(frame_pose(frame, f"{json_path}: frame {i} ({paths[-1]})"))
  names = [os.path.splitext(path)[0] for path in paths]  # they name the eval outputs, eval/<name>.png
  if long_side > 0:
    factor = factor_for_long_side(
        data_dir, paths[0], {**global_camera, **{k: frames[0][k] for k in CAMERA_KEYS if k in frames[0]}}, long_side)
  scene_from_world, all_poses, depths, near, far = scene_frame(np.stack(all_poses), frames, normalize, centre, near,
                                                                far)

  split_names = {s: [names[i] for i in split_of(meta, names, s, hold, json_path)] for s in ("train", "test")}
  indices = split_of(meta, names, split, hold, json_path)[::stride]
  if not indices:
    raise DataError(f"{json_path}: split '{split}' has no frames (data.transforms.hold={hold}, {len(frames)} frames)")

  held = share_of(len(indices), share, json_path)
  row_of = {int(i): row for row, i in enumerate(held)}  # view -> its row in `images`
  images = alpha = None
  intrinsics, distortions, models = [], [], set()
  for view, i in enumerate(indices):
    where = f"{json_path}: frame {i} ({paths[i]})"
    image_path, extra_factor = image_path_of(data_dir, paths[i], factor)
    decoded = not check_only and view in row_of  # else: another process's photo, or a check
    rgba = read_rgba(image_path) if decoded else None
    h, w = rgba.shape[:2] if decoded else read_size(image_path)
    kept = (h - h % extra_factor, w - w % extra_factor) if long_side > 0 else (h, w)
    if kept[0] % extra_factor or kept[1] % extra_factor:
      raise DataError(f"{image_path}: downsampling factor {extra_factor} does not divide the image size {w}x{h}")
    loaded = (h // extra_factor, w // extra_factor)
    # w and h (and the intrinsics) describe the full-size photo: scale them to an images_{factor}/ copy.
    full_scale = factor // extra_factor
    camera = {**global_camera, **{k: frames[i][k] for k in CAMERA_KEYS if k in frames[i]}}
    if check_only:
      camera_of(camera, w * full_scale, h * full_scale, where, full_scale)
      continue
    if images is None:  # filled in place: a list and a stacked copy would need twice the memory
      images = np.empty((len(held), *loaded, 3), np.float32)
      alpha = np.empty((len(held), *loaded), np.float32)
    elif loaded != images.shape[1:3]:
      raise DataError(f"{image_path}: image is {loaded[1]}x{loaded[0]} once loaded, expected "
                      f"{images.shape[2]}x{images.shape[1]} like the other photos of the split")
    frame_intrinsics, distortion, model = camera_of(camera, w * full_scale, h * full_scale, where, full_scale)
    intrinsics.append(frame_intrinsics / factor)
    distortions.append(distortion)
    models.add(model)
    if decoded:
      premultiplied = downsample_premultiplied(rgba[:kept[0], :kept[1]], extra_factor)
      images[row_of[view]] = composite_on_background(premultiplied, background)
      alpha[row_of[view]] = premultiplied[..., 3]
  if check_only:
    return None
  intrinsics = np.stack(intrinsics)
  return Views(images=images, cam_to_world=all_poses[indices].astype(np.float32),
               focal=float(intrinsics[:, :2].mean()), near=float(near), far=float(far),
               names=[names[i] for i in indices], pixel_center=pixel_center, alpha=alpha,
               background=tuple(float(c) for c in background), intrinsics=intrinsics.astype(np.float32),
               camera_model=one_camera_model(models, json_path), distortion=np.stack(distortions).astype(np.float32),
               scene_from_world=scene_from_world, split_names=split_names,
               bounds=None if depths is None else depths[indices].astype(np.float32),
               held=None if share is None else held)
