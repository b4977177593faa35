"""A PNG of a vertex-coloured mesh from export.py, seen from a few directions (for docs; needs matplotlib).

  python scripts/mesh_picture.py --mesh=runs/demo_fast/export/mesh_2500.ply --output=docs/mesh.png

Faces are drawn with the mean colour of their vertices, shaded by a light from the viewer (Lambert), and sorted
back to front by matplotlib.
"""
from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from mpl_toolkits.mplot3d import art3d  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import trimesh  # pylint: disable=wrong-import-position

flags.DEFINE_string("mesh", None, "PLY or OBJ mesh with vertex colours.", required=True)
flags.DEFINE_string("output", None, "PNG to write.", required=True)
flags.DEFINE_multi_string("view", ["30,-60", "30,120"], "elevation,azimuth in degrees of each panel.")
flags.DEFINE_integer("size", 320, "Pixels per panel side.")
flags.DEFINE_float("zoom", 1.4, "Magnification of the scene in its panel.")
flags.DEFINE_float("ambient", 0.35, "Share of light that does not depend on the face's direction.")
FLAGS = flags.FLAGS


def view_direction(elevation, azimuth):
  """Unit vector from the scene towards a matplotlib camera at (elevation, azimuth) in degrees."""
  e, a = np.radians(elevation), np.radians(azimuth)
  return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def main(argv):
  del argv
  mesh = trimesh.load(FLAGS.mesh, process=False)
  triangles = mesh.vertices[mesh.faces]
  colors = mesh.visual.vertex_colors[:, :3][mesh.faces].mean(axis=1) / 255.0
  lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
  half = (hi - lo).max() / 2
  centre = (lo + hi) / 2
  views = [tuple(float(v) for v in view.split(",")) for view in FLAGS.view]
  dpi = 100
  figure = plt.figure(figsize=(FLAGS.size * len(views) / dpi, FLAGS.size / dpi), dpi=dpi)
  for i, (elevation, azimuth) in enumerate(views):
    axes = figure.add_subplot(1, len(views), i + 1, projection="3d")
    lambert = np.clip(mesh.face_normals @ view_direction(elevation, azimuth), 0.0, 1.0)
    shade = FLAGS.ambient + (1 - FLAGS.ambient) * lambert
    axes.add_collection3d(art3d.Poly3DCollection(triangles, facecolors=np.clip(colors * shade[:, None], 0, 1),
                                                 linewidths=0))
    for set_limits, c in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), centre):
      set_limits(c - half, c + half)
    axes.set_box_aspect((1, 1, 1), zoom=FLAGS.zoom)
    axes.view_init(elev=elevation, azim=azimuth)
    axes.set_axis_off()
  figure.subplots_adjust(0, 0, 1, 1, 0, 0)
  figure.savefig(FLAGS.output, dpi=dpi)
  print(f"{len(mesh.faces)} faces drawn to {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
