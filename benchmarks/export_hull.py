"""How clean export.py's geometry is: the share of a run's mesh vertices and point-cloud points inside the object's
visual hull (carved from the training photos' alpha masks, independent of any model) and inside the scene box,
with export's cleanup on and off. For Blender-format scenes (photos with alpha).

  python benchmarks/export_hull.py --config=configs/demo_fast.py --workdir=runs/demo_fast

Prints a table and writes the meshes and point clouds to <workdir>/export/hull_*.ply.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from jaxnerf.data import loaders  # noqa: E402
from jaxnerf.run import cli  # noqa: E402
from jaxnerf.run import export as export_lib  # noqa: E402
from jaxnerf.run import geometry_cleanup  # noqa: E402

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_integer("resolution", 256, "marching cubes grid points along the box's longest side")
flags.DEFINE_float("threshold", 10.0, "the surface's density")
flags.DEFINE_integer("num_points", 200_000, "point cloud size")


def in_visual_hull(points, views, margin_pixels=1):
  """[n] bool: points that every training view whose image they project into sees inside the object's silhouette
  (alpha >= 0.5 within `margin_pixels` of the pixel: the hull's boundary is known to about a pixel)."""
  inside = np.ones(len(points), bool)
  for pose, intrinsics, alpha in zip(views.cam_to_world.astype(np.float64), views.intrinsics, views.alpha):
    silhouette = alpha >= 0.5
    for _ in range(margin_pixels):  # grow the silhouette by a pixel
      grown = silhouette.copy()
      grown[1:] |= silhouette[:-1]
      grown[:-1] |= silhouette[1:]
      grown[:, 1:] |= silhouette[:, :-1]
      grown[:, :-1] |= silhouette[:, 1:]
      silhouette = grown
    local = (points - pose[:3, 3]) @ pose[:3, :3]
    depth = -local[:, 2]
    fx, fy, cx, cy = intrinsics
    with np.errstate(all="ignore"):
      column = np.floor(fx * local[:, 0] / depth + cx)
      row = np.floor(-fy * local[:, 1] / depth + cy)
    seen = (depth > 0) & (column >= 0) & (column < views.width) & (row >= 0) & (row < views.height)
    inside[seen] &= silhouette[row[seen].astype(int), column[seen].astype(int)]
  return inside


def read_points(path):
  import trimesh  # pylint: disable=import-outside-toplevel
  geometry = trimesh.load(path, process=False)
  return np.asarray(geometry.vertices, np.float64)


def main(argv):
  del argv
  cli.quiet_library_logs()
  config = FLAGS.config
  workdir = cli.workdir(FLAGS)
  views = loaders.load_views(config, "train")
  box = np.asarray(config.data.scene_box)
  rows = []
  for what in ("mesh", "pointcloud"):
    for clean in (False, True):
      cleanup = geometry_cleanup.Cleanup(cull=clean, in_box=clean)
      path = os.path.join(workdir, "export", f"hull_{what}_{'clean' if clean else 'raw'}.ply")
      export_lib.export(config, workdir, what, output=path, resolution=FLAGS.resolution, threshold=FLAGS.threshold,
                        num_points=FLAGS.num_points, cleanup=cleanup)
      points = read_points(path)
      rows.append((what, "on" if clean else "off", len(points),
                   f"{100 * in_visual_hull(points, views).mean():.1f}%",
                   f"{100 * geometry_cleanup.inside_box(points, box).mean():.1f}%"))
  print("| export | cleanup | vertices or points | in the visual hull | in the scene box |")
  print("|---|---|---|---|---|")
  for row in rows:
    print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
