"""Compare a run's refined training poses (<workdir>/views.json) with the exact ones of a Blender-format scene, and
the poses it was given with them: mean rotation error in degrees and position error in scene units.

  python scripts/pose_errors.py --workdir=runs/lego_poses --given=PATH/lego_poses --exact=PATH/lego

The refined poses are anchored to the given ones as a whole (their corrections have zero mean), so a common
offset of the given poses from the exact ones, the mean perturbation, stays in both columns.
"""
import argparse
import json
import os

import numpy as np


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


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--given", required=True, help="the scene the run trained on")
  parser.add_argument("--exact", required=True, help="the same scene with exact poses")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "views.json")) as f:
    refined = {frame["name"]: np.asarray(frame["cam_to_world_input"]) for frame in json.load(f)["frames"]}
  given, exact = poses_by_name(args.given), poses_by_name(args.exact)
  names = sorted(refined)
  for label, poses in (("given", [given[n] for n in names]), ("refined", [refined[n] for n in names])):
    angle, distance = errors(poses, [exact[n] for n in names])
    print(f"{label:8s} poses: mean rotation error {angle:.3f} degrees, mean position error {distance:.4f}")


if __name__ == "__main__":
  main()
