"""Write a copy of a Blender-format scene whose training views have what real captures have: small pose errors
and changing exposure and white balance. Held-out views (val, test) stay exact. Seeded, so that runs compare.

  python scripts/perturb_scene.py --input=jaxnerf/demo_data/lego_100 --output=/path/lego_poses --rotate=2,4 \
      --translate=0.02,0.04
  python scripts/perturb_scene.py --input=jaxnerf/demo_data/lego_100 --output=/path/lego_exposure \
      --gain=0.6,1.4 --white_balance=0.9,1.1

Poses: each training camera turned about its centre by an angle drawn from --rotate (degrees, about a random
axis) and moved by a distance drawn from --translate (a fraction of the camera's distance from the origin, in a
random direction). Photos: each training photo's colour (not its alpha) multiplied by a gain drawn from --gain
and, per channel, a white-balance factor drawn from --white_balance, then clipped to [0, 1] as a camera would.
The perturbations are written to <output>/perturbation.json.
"""
import argparse
import json
import os
import shutil

import numpy as np
from PIL import Image


def random_rotation(rng, degrees):
  """A rotation by `degrees` about a uniformly random axis (Rodrigues)."""
  axis = rng.normal(size=3)
  axis /= np.linalg.norm(axis)
  theta = np.radians(degrees)
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def perturbed_pose(pose, rng, rotate, translate):
  """A 4x4 camera-to-world matrix turned about its centre and moved: (pose, angle in degrees, distance)."""
  pose = np.array(pose, np.float64)
  angle = rng.uniform(*rotate) if rotate else 0.0
  distance = rng.uniform(*translate) * np.linalg.norm(pose[:3, 3]) if translate else 0.0
  direction = rng.normal(size=3)
  pose[:3, :3] = random_rotation(rng, angle) @ pose[:3, :3]
  pose[:3, 3] += distance * direction / np.linalg.norm(direction)
  return pose, angle, distance


def exposed(path, factors):
  """Multiply the colour of an RGBA or RGB image file in place by [3] factors, clipped."""
  with Image.open(path) as image:
    mode = "RGBA" if "A" in image.mode else "RGB"
    pixels = np.asarray(image.convert(mode), np.float64) / 255.0
  pixels[..., :3] = np.clip(pixels[..., :3] * factors, 0.0, 1.0)
  Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode).save(path)


def interval(text):
  low, high = (float(v) for v in text.split(","))
  return low, high


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", required=True, help="a Blender-format scene (transforms_train.json, train/...)")
  parser.add_argument("--output", required=True, help="the folder to write (must not exist)")
  parser.add_argument("--rotate", type=interval, help="min,max angle in degrees")
  parser.add_argument("--translate", type=interval, help="min,max distance as a fraction of the camera's")
  parser.add_argument("--gain", type=interval, help="min,max exposure gain")
  parser.add_argument("--white_balance", type=interval, help="min,max factor per colour channel")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if os.path.exists(args.output):
    parser.error(f"--output={args.output}: exists already; choose a new folder")
  if not os.path.isfile(os.path.join(args.input, "transforms_train.json")):
    parser.error(f"--input={args.input}: no transforms_train.json (expected a Blender-format scene)")
  shutil.copytree(args.input, args.output)
  rng = np.random.default_rng(args.seed)
  json_path = os.path.join(args.output, "transforms_train.json")
  with open(json_path) as f:
    meta = json.load(f)
  record = []
  for frame in meta["frames"]:
    pose, angle, distance = perturbed_pose(frame["transform_matrix"], rng, args.rotate, args.translate)
    frame["transform_matrix"] = pose.tolist()
    factors = np.ones(3)
    if args.gain:
      factors *= rng.uniform(*args.gain)
    if args.white_balance:
      factors *= rng.uniform(*args.white_balance, size=3)
    if args.gain or args.white_balance:
      image = os.path.join(args.output, frame["file_path"])
      exposed(image if os.path.splitext(image)[1] else image + ".png", factors)
    record.append({"file_path": frame["file_path"], "degrees": angle, "distance": distance,
                   "color_factors": factors.tolist()})
  with open(json_path, "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(args.output, "perturbation.json"), "w") as f:
    json.dump({"arguments": {k: v for k, v in vars(args).items() if k not in ("input", "output")},
               "frames": record}, f, indent=2)
  print(f"wrote {args.output}: {len(record)} training views perturbed")


if __name__ == "__main__":
  main()
