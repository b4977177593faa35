"""Build the built-in demo scene: Blender lego downscaled 8x to 100x100.

Usage: python scripts/make_demo_scene.py [--source ../shared/data/nerf_synthetic/lego]

Writes jaxnerf/demo_data/lego_100/ in the Blender layout: all 100 training views, validation views r_0 and r_50,
and test views r_0, r_25, ..., r_175. Colours are area-averaged in premultiplied RGBA (as the loader does) and
stored as straight-alpha RGBA PNGs, so the demo loads through the ordinary Blender loader.
"""
import argparse
import json
import os
import shutil

import numpy as np
from PIL import Image

from jaxnerf.data import images

FACTOR = 8
KEEP = {"train": None, "val": ["r_0", "r_50"], "test": [f"r_{i}" for i in range(0, 200, 25)]}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SOURCE = os.path.join(REPO, "..", "shared", "data", "nerf_synthetic", "lego")
OUTPUT = os.path.join(REPO, "jaxnerf", "demo_data", "lego_100")
CREDIT = """# Demo scene: lego at 100x100

Derived from the Blender synthetic `lego` scene of the NeRF dataset (Mildenhall et al. 2020) by
`scripts/make_demo_scene.py`: every image downscaled 8x (800x800 -> 100x100) by area-averaging premultiplied
RGBA; all 100 training views, validation views r_0 and r_50, and test views r_0, r_25, ..., r_175. Camera poses
and `camera_angle_x` are unchanged.

Credit and licence: the lego model is credited to Heinzelnisse under CC-BY-NC (per the dataset's own README).
For research and testing only.
"""


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--source", default=DEFAULT_SOURCE, help="the full-size lego scene folder")
  args = parser.parse_args()
  if os.path.exists(OUTPUT):
    shutil.rmtree(OUTPUT)
  for split, keep in KEEP.items():
    with open(os.path.join(args.source, f"transforms_{split}.json")) as f:
      meta = json.load(f)
    frames = [fr for fr in meta["frames"] if keep is None or os.path.basename(fr["file_path"]) in keep]
    os.makedirs(os.path.join(OUTPUT, split))
    for frame in frames:
      rgba = images.read_rgba(os.path.join(args.source, frame["file_path"] + ".png"))
      premultiplied = images.downsample_premultiplied(rgba, FACTOR)
      alpha = premultiplied[..., 3:]
      straight = np.where(alpha > 0, premultiplied[..., :3] / np.maximum(alpha, 1e-8), 0.0)
      pixels = np.round(np.clip(np.concatenate([straight, alpha], -1), 0, 1) * 255).astype(np.uint8)
      Image.fromarray(pixels, "RGBA").save(os.path.join(OUTPUT, frame["file_path"] + ".png"), optimize=True)
    with open(os.path.join(OUTPUT, f"transforms_{split}.json"), "w") as f:
      json.dump({"camera_angle_x": meta["camera_angle_x"], "frames": frames}, f, indent=1)
  with open(os.path.join(OUTPUT, "README.md"), "w") as f:
    f.write(CREDIT)
  print(f"wrote {OUTPUT}")


if __name__ == "__main__":
  main()
