"""Compare a run's refined training poses (<workdir>/views.json) with the exact ones of a Blender-format scene, and
the poses it was given with them: mean rotation error in degrees and position error in scene units.

  python scripts/pose_errors.py --workdir=runs/lego_poses --given=PATH/lego_poses --exact=PATH/lego

The refined poses are anchored to the given ones as a whole (their corrections have zero mean), so a common
offset of the given poses from the exact ones, the mean perturbation, stays in both columns; the "aligned" rows
first move the poses as a whole by the similarity (turn, shift, scale) that best maps their camera centres onto the
exact ones (Umeyama 1991, as BARF scores refined poses), which leaves each camera's error relative to the others. A small turn of a camera
and a small sideways move look alike in its photo of a compact object, so the pose errors can stay large while the
photos agree; the reprojection error says how far apart (in pixels) the two cameras see points of the object: the
centre and the corners of a cube of half-size --radius about it.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image


def poses_by_name(scene_dir):
  with open(os.path.join(scene_dir, "transforms_train.json")) as f:
    frames = json.load(f)["frames"]
  return {os.path.splitext(os.path.normpath(frame["file_path"]))[0]: np.asarray(frame["transform_matrix"])[:3]
          for frame in frames}


def errors(poses, exact):
  """Mean rotation angle (degrees) and mean distance between the camera centres of two lists of [3, 4] poses."""
  angles, distances = [], []
  for pose, reference in zip(poses, exact):
    cosine = (np.trace(pose[:, :3].T @ reference[:, :3]) - 1) / 2
    angles.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    distances.append(np.linalg.norm(pose[:, 3] - reference[:, 3]))
  return float(np.mean(angles)), float(np.mean(distances))


def aligned(poses, exact):
  """[3, 4] poses moved as a whole by the similarity that maps their camera centres closest to the exact ones'
  (least squares; Umeyama's closed form)."""
  centres, targets = np.stack([p[:, 3] for p in poses]), np.stack([r[:, 3] for r in exact])
  mean, target_mean = centres.mean(0), targets.mean(0)
  u, singular, vt = np.linalg.svd((targets - target_mean).T @ (centres - mean) / len(poses))
  sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
  rotation = u @ sign @ vt
  scale = np.trace(np.diag(singular) @ sign) / np.mean(np.sum((centres - mean) ** 2, axis=-1))
  return [np.concatenate([rotation @ p[:, :3], (scale * rotation @ (p[:, 3] - mean) + target_mean)[:, None]], 1)
          for p in poses]


def reprojection_error(poses, exact, focal, radius):
  """Mean distance in pixels between the images of the cube's points seen from poses and from the exact ones."""
  points = np.array([[0.0, 0.0, 0.0]] + [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * radius

  def project(pose):
    camera = (points - pose[:, 3]) @ pose[:, :3]  # OpenGL camera axes: looking down -z
    return focal * camera[:, :2] / -camera[:, 2:]

  return float(np.mean([np.linalg.norm(project(p) - project(r), axis=-1).mean() for p, r in zip(poses, exact)]))


def focal_length(scene_dir):
  """The Blender scene's focal length in pixels of its training photos."""
  with open(os.path.join(scene_dir, "transforms_train.json")) as f:
    meta = json.load(f)
  first = os.path.join(scene_dir, os.path.normpath(meta["frames"][0]["file_path"]))
  with Image.open(first if os.path.splitext(first)[1] else first + ".png") as image:
    width = image.size[0]
  return 0.5 * width / np.tan(0.5 * meta["camera_angle_x"])


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--given", required=True, help="the scene the run trained on")
  parser.add_argument("--exact", required=True, help="the same scene with exact poses")
  parser.add_argument("--radius", type=float, default=0.7, help="half-size of the object's cube (lego: 0.7)")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "views.json")) as f:
    refined = {frame["name"]: np.asarray(frame["cam_to_world_input"]) for frame in json.load(f)["frames"]}
  given, exact = poses_by_name(args.given), poses_by_name(args.exact)
  names = sorted(refined)
  reference = [exact[n] for n in names]
  rows = [("given", [given[n] for n in names]), ("refined", [refined[n] for n in names])]
  rows += [(label + ", aligned", aligned(poses, reference)) for label, poses in rows]
  for label, poses in rows:
    angle, distance = errors(poses, reference)
    pixels = reprojection_error(poses, [exact[n] for n in names], focal_length(args.exact), args.radius)
    print(f"{label:17s} poses: mean rotation error {angle:.3f} degrees, mean position error {distance:.4f}, "
          f"mean reprojection error {pixels:.2f} px")


if __name__ == "__main__":
  main()
