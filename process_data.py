"""From photos (or a video, or an existing COLMAP model) to a scene folder that data.dataset=transforms loads.

  python process_data.py --images=DIR --output=SCENE             # COLMAP through pycolmap: features, matching, mapping
  python process_data.py --video=FILE --frames=100 --output=SCENE  # frames taken evenly with imageio-ffmpeg first
  python process_data.py --colmap_model=DIR/sparse/0 --images=DIR --output=SCENE  # convert an existing model

SCENE gets images/ (copies of the photos that registered), images_2/, images_4/, images_8/ (area-downscaled copies
for data.factor), colmap/ (COLMAP's database and sparse model) and transforms.json with each camera's own model and
parameters. Needs pip install "jaxnerf[colmap]".
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from jaxnerf.data import colmap
from jaxnerf.data import images as images_lib
from jaxnerf.errors import DataError
from jaxnerf.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DOWNSCALES = (2, 4, 8)
MIN_REGISTERED = 3


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--images", help="folder of photos (.png, .jpg)")
  parser.add_argument("--video", help="video file to take frames from instead")
  parser.add_argument("--frames", type=int, default=100, help="number of frames taken from --video")
  parser.add_argument("--colmap_model",
                      help="convert this COLMAP sparse model (with --images) instead of running COLMAP")
  parser.add_argument("--output", required=True, help="scene folder to write")
  parser.add_argument("--camera_model", default="OPENCV", choices=sorted(colmap.CAMERA_MODELS),
                      help="COLMAP camera model, one shared by all photos")
  parser.add_argument("--matcher", default="exhaustive", choices=("exhaustive", "sequential"),
                      help="exhaustive for photos, sequential for video frames")
  args = parser.parse_args(argv)
  if sum(x is not None for x in (args.images, args.video)) != 1:
    parser.error("give exactly one of --images and --video")
  if args.colmap_model and not args.images:
    parser.error("--colmap_model needs --images, the photos the model was made from")
  if args.frames < MIN_REGISTERED:
    parser.error(f"--frames must be at least {MIN_REGISTERED}")
  return args


def stage(number, total, text):
  print(f"[{number}/{total}] {text}", flush=True)


def photo_names(folder):
  if not os.path.isdir(folder):
    raise DataError(f"{folder}: folder of photos not found")
  names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise DataError(f"{folder}: no photos (expected .png, .jpg or .jpeg files)")
  return names


def copy_photos(source, names, folder):
  """Copy the photos into the scene's images/ folder, oriented (EXIF applied) and as 8-bit RGB PNG or JPEG."""
  os.makedirs(folder, exist_ok=True)
  for name in names:
    with Image.open(os.path.join(source, name)) as image:
      if image.getexif().get(0x0112, 1) == 1 and image.mode in ("RGB", "L"):
        shutil.copyfile(os.path.join(source, name), os.path.join(folder, name))
        continue
    rgb = images_lib.read_rgba(os.path.join(source, name))[..., :3]
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(os.path.join(folder, name), quality=95)


def video_frames(video, count, folder):
  """`count` frames taken evenly from a video into `folder` as PNGs (two passes: count, then save, so the
  video is never held in memory); returns their names."""
  import imageio.v3 as iio  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  try:
    total = sum(1 for _ in iio.imiter(video, plugin="FFMPEG"))
    if total < MIN_REGISTERED:
      raise DataError(f"{video}: has {total} frames, expected at least {MIN_REGISTERED}")
    wanted = {int(i): k for k, i in enumerate(np.linspace(0, total - 1, min(count, total)).round())}
    names = []
    for index, frame in enumerate(iio.imiter(video, plugin="FFMPEG")):
      if index in wanted:
        names.append(f"frame_{wanted[index]:05d}.png")
        Image.fromarray(frame[..., :3]).save(os.path.join(folder, names[-1]))
  except (OSError, RuntimeError, ValueError) as e:
    if isinstance(e, DataError):
      raise
    raise DataError(f"{video}: cannot read the video ({str(e).splitlines()[0] if str(e) else e})") from None
  return names


def run_colmap(image_dir, names, work_dir, camera_model, matcher):
  """COLMAP's feature extraction, matching and incremental mapping; the reconstruction with most images."""
  pycolmap = colmap.import_pycolmap()
  # Quiet: the stages and the count of registered photos are the display, and a failure is reported as one line.
  pycolmap.logging.minloglevel = 3
  os.makedirs(work_dir, exist_ok=True)
  database = os.path.join(work_dir, "database.db")
  if os.path.exists(database):
    os.remove(database)
  started = time.time()
  stage(1, 4, f"extracting features from {len(names)} photos")
  reader = pycolmap.ImageReaderOptions()
  reader.camera_model = camera_model
  pycolmap.extract_features(database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                            reader_options=reader, device=pycolmap.Device.cpu)
  stage(2, 4, f"matching ({matcher}), {time.time() - started:.0f} s so far")
  if matcher == "exhaustive":
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
  else:
    pycolmap.match_sequential(database, device=pycolmap.Device.cpu)
  stage(3, 4, f"incremental mapping, {time.time() - started:.0f} s so far")
  registered = [0]

  def next_image():
    registered[0] += 1
    print(f"\r  photos registered after the initial pair: {registered[0]}", end="", flush=True)

  sparse_dir = os.path.join(work_dir, "sparse")
  os.makedirs(sparse_dir, exist_ok=True)
  reconstructions = pycolmap.incremental_mapping(database, image_dir, sparse_dir, next_image_callback=next_image)
  print(flush=True)
  best = max(reconstructions.values(), key=lambda r: r.num_reg_images(), default=None)
  count = best.num_reg_images() if best is not None else 0
  if count < MIN_REGISTERED:
    raise DataError(f"{image_dir}: only {count} of {len(names)} photos registered (at least {MIN_REGISTERED} "
                    "needed); take more photos with more overlap")
  best_dir = os.path.join(sparse_dir, "0")
  os.makedirs(best_dir, exist_ok=True)
  best.write(best_dir)
  print(f"  {count} of {len(names)} photos registered in {time.time() - started:.0f} s", flush=True)
  return best


def write_downscaled(scene, names):
  """images_{k}/ copies of images/, area-averaged, sizes rounded (nerfstudio's layout)."""
  for factor in DOWNSCALES:
    folder = os.path.join(scene, f"images_{factor}")
    os.makedirs(folder, exist_ok=True)
    for name in names:
      with Image.open(os.path.join(scene, "images", name)) as image:
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        image.convert("RGB").resize(size, Image.Resampling.BOX).save(os.path.join(folder, name), quality=95)


def write_transforms(scene, reconstruction):
  import json  # pylint: disable=import-outside-toplevel
  document = colmap.reconstruction_document(reconstruction, "images", where=os.path.join(scene, "colmap"))
  path = os.path.join(scene, "transforms.json")
  with open(path + ".tmp", "w") as f:
    json.dump(document, f, indent=2)
  os.replace(path + ".tmp", path)
  return path, document


def process(args):
  scene = args.output
  image_dir = os.path.join(scene, "images")
  if args.video:
    if not os.path.isfile(args.video):
      raise DataError(f"{args.video}: video file not found")
    names = video_frames(args.video, args.frames, image_dir)
  else:
    names = photo_names(args.images)
    if os.path.abspath(args.images) != os.path.abspath(image_dir):
      copy_photos(args.images, names, image_dir)
  if args.colmap_model:
    reconstruction = colmap.read_model(args.colmap_model)
  else:
    reconstruction = run_colmap(image_dir, names, os.path.join(scene, "colmap"), args.camera_model, args.matcher)
  stage(4, 4, "writing transforms.json and downscaled copies")
  path, document = write_transforms(scene, reconstruction)
  write_downscaled(scene, sorted(os.path.basename(f["file_path"]) for f in document["frames"]))
  print(f"{path}: {len(document['frames'])} views. Train with --config.data.dataset=transforms "
        f"--config.data.data_dir={scene}", flush=True)


def main(argv=None):
  args = parse_args(argv)
  try:
    process(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  main()
