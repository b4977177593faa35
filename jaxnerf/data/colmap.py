"""COLMAP sparse models (cameras, images, points; binary or text) as transforms.json documents, read with pycolmap
(pip install "jaxnerf[colmap]").

COLMAP's cameras look down +z with +y down; transforms.json (and rays.py) use OpenGL's -z forward, +y up, so the
y and z axes of every camera-to-world matrix are flipped. Camera models map onto the loader's: SIMPLE_PINHOLE and
PINHOLE to PINHOLE; SIMPLE_RADIAL, RADIAL and OPENCV to OPENCV; OPENCV_FISHEYE, SIMPLE_RADIAL_FISHEYE and
RADIAL_FISHEYE (all equidistant with a polynomial in the angle) to OPENCV_FISHEYE.
"""
import os

import numpy as np

from jaxnerf import storage
from jaxnerf.errors import DataError

# COLMAP model -> (transforms.json camera_model, the names of its parameters in COLMAP's order; f is fl_x = fl_y).
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": ("PINHOLE", ("f", "cx", "cy")),
    "PINHOLE": ("PINHOLE", ("fl_x", "fl_y", "cx", "cy")),
    "SIMPLE_RADIAL": ("OPENCV", ("f", "cx", "cy", "k1")),
    "RADIAL": ("OPENCV", ("f", "cx", "cy", "k1", "k2")),
    "OPENCV": ("OPENCV", ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "p1", "p2")),
    "OPENCV_FISHEYE": ("OPENCV_FISHEYE", ("fl_x", "fl_y", "cx", "cy", "k1", "k2", "k3", "k4")),
    "SIMPLE_RADIAL_FISHEYE": ("OPENCV_FISHEYE", ("f", "cx", "cy", "k1")),
    "RADIAL_FISHEYE": ("OPENCV_FISHEYE", ("f", "cx", "cy", "k1", "k2")),
}
# A COLMAP model's files, binary or text.
MODEL_FILES = tuple(f"{part}.{ext}" for part in ("cameras", "images", "points3D") for ext in ("bin", "txt"))
COLMAP_FROM_OPENGL = np.diag([1.0, -1.0, -1.0])


def import_pycolmap():
  try:
    import pycolmap  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DataError("reading COLMAP models needs pycolmap: pip install \"jaxnerf[colmap]\" (or pip install "
                    "pycolmap)") from None
  return pycolmap


def camera_keys(camera, where):
  """transforms.json keys (w, h, camera_model, fl_x, fl_y, cx, cy and distortion) of a pycolmap Camera."""
  model_name = camera.model.name
  if model_name not in CAMERA_MODELS:
    raise DataError(f"{where}: COLMAP camera model {model_name} is not supported (expected one of "
                    f"{', '.join(CAMERA_MODELS)})")
  camera_model, names = CAMERA_MODELS[model_name]
  keys = {"w": int(camera.width), "h": int(camera.height), "camera_model": camera_model}
  for name, value in zip(names, np.asarray(camera.params, np.float64)):
    if name == "f":
      keys["fl_x"] = keys["fl_y"] = float(value)
    else:
      keys[name] = float(value)
  return keys


def opengl_cam_to_world(cam_from_world):
  """[4, 4] OpenGL camera-to-world matrix of a COLMAP world-to-camera [3, 4] matrix."""
  rotation, translation = cam_from_world[:, :3], cam_from_world[:, 3]
  pose = np.eye(4)
  pose[:3, :3] = rotation.T @ COLMAP_FROM_OPENGL
  pose[:3, 3] = -rotation.T @ translation
  return pose


def reconstruction_document(reconstruction, image_folder="images", where="COLMAP model"):
  """A transforms.json document of the registered images of a pycolmap Reconstruction, sorted by name.

  Camera keys are global where every image shares one camera, else per frame. `points_depth` records, per
  frame, the 1st and 99th percentile depth of the 3D points it sees (COLMAP's near and far hints).
  """
  cameras = {}
  frames = []
  for image_id in reconstruction.reg_image_ids():
    image = reconstruction.image(image_id)
    pose = image.cam_from_world
    cam_from_world = np.asarray((pose() if callable(pose) else pose).matrix(), np.float64)
    cameras[image.camera_id] = camera_keys(reconstruction.camera(image.camera_id), f"{where}: camera "
                                           f"{image.camera_id}")
    frame = {"file_path": os.path.join(image_folder, image.name),
             "transform_matrix": opengl_cam_to_world(cam_from_world).tolist(), "camera_id": int(image.camera_id)}
    points = [reconstruction.point3D(p.point3D_id).xyz for p in image.points2D if p.has_point3D()]
    if points:
      depths = (np.asarray(points) @ cam_from_world[:, :3].T + cam_from_world[:, 3])[:, 2]
      frame["points_depth"] = [float(np.percentile(depths, 1)), float(np.percentile(depths, 99))]
    frames.append(frame)
  if not frames:
    raise DataError(f"{where}: no registered images")
  frames.sort(key=lambda f: f["file_path"])
  document = {"frames": frames}
  if len(cameras) == 1:
    document.update(next(iter(cameras.values())))
  else:
    for frame in frames:
      frame.update(cameras[frame["camera_id"]])
  return document


def read_model(model_dir):
  """The pycolmap Reconstruction in `model_dir` (cameras, images and points3D, .bin or .txt)."""
  pycolmap = import_pycolmap()
  if not any(storage.isfile(storage.join(model_dir, f"cameras.{ext}")) for ext in ("bin", "txt")):
    raise DataError(f"{model_dir}: not a COLMAP model (expected cameras, images and points3D .bin or .txt files)")
  try:
    with storage.local_folder(model_dir, MODEL_FILES) as folder:  # pycolmap reads local files only
      return pycolmap.Reconstruction(folder)
  except (RuntimeError, ValueError, OSError) as e:
    raise DataError(f"{model_dir}: COLMAP model cannot be read ({str(e).splitlines()[0] if str(e) else e})") from None
