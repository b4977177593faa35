"""Clean geometry out of any run: keep what the training cameras saw, drop the rest.

A field is only constrained where training rays pass; elsewhere (under lego's baseplate, beyond the views) it is
free to hold floaters, which marching cubes turns into layers of surface. A mesh vertex is kept when at least one
training camera sees it as surface: it projects into that camera's image, in front of it, where the render of that
view is opaque and its depth agrees with the vertex's to within a tolerance. Points that a camera sees as empty
(in front of its rendered surface, or where it renders background) and points no camera sees (behind every
rendered surface) are removed, with their faces. Optionally only the largest connected components are kept.

Cameras are projected as pinholes with their intrinsics (lens distortion is not applied: a vertex that moves by
a distorted pixel or two stays within the tolerance of the neighbourhood it is compared with).
"""
from typing import NamedTuple

import numpy as np


class Cleanup(NamedTuple):
  """What export keeps (below): with `cull`, mesh vertices that some training camera sees as surface
  (every `cull_stride`-th training view, rendered with its long side near `cull_size` pixels; where a photo is
  transparent its camera sees empty space), and point-cloud points only where the photo is opaque; with `components`
  > 0, only that many largest connected pieces of the mesh; with `in_box`, point-cloud points inside the box of
  a bounded field (not for contracted or NDC scenes, whose fields cover all of space)."""
  cull: bool = True
  cull_stride: int = 4
  cull_size: int = 128
  components: int = 0
  in_box: bool = True


class CameraDepth(NamedTuple):
  """A training view's rendered depth at low resolution."""
  cam_to_world: np.ndarray  # [3, 4] (OpenGL convention: looks down -z)
  intrinsics: np.ndarray  # [4] fx, fy, cx, cy in pixels of `depth`
  depth: np.ndarray  # [h, w] camera-space depth of the rendered surface, nan where the render is not opaque


def neighbourhood_range(depth):
  """The smallest and largest finite depth of each pixel's 3x3 neighbourhood (a vertex near a silhouette may
  project onto the background pixel beside its surface): [h, w] -> two [h, w] arrays, nan where all nine are nan."""
  padded = np.pad(depth, 1, constant_values=np.nan)
  h, w = depth.shape
  stack = np.stack([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)])
  with np.errstate(all="ignore"):
    finite = np.isfinite(stack)
    low = np.where(finite, stack, np.inf).min(axis=0)
    high = np.where(finite, stack, -np.inf).max(axis=0)
  empty = ~finite.any(axis=0)
  return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def seen_as_surface(points, cameras, tolerance):
  """Whether some camera sees each point as surface.

  Args:
    points: [n, 3] scene coordinates.
    cameras: CameraDepth of each view.
    tolerance: a distance in the scene: a point within it of the rendered surface (along the camera's axis) counts
      as that surface.

  Returns:
    [n] bool.
  """
  points = np.asarray(points, np.float64)
  seen = np.zeros(len(points), bool)
  for camera in cameras:
    low, high = neighbourhood_range(camera.depth)
    rotation, origin = camera.cam_to_world[:3, :3].astype(np.float64), camera.cam_to_world[:3, 3]
    local = (points - origin) @ rotation  # world -> camera: R^T (p - o)
    z = -local[:, 2]
    fx, fy, cx, cy = camera.intrinsics
    with np.errstate(all="ignore"):
      u = np.floor(fx * local[:, 0] / z + cx)
      v = np.floor(-fy * local[:, 1] / z + cy)
    h, w = camera.depth.shape
    inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    row, col = v[inside].astype(int), u[inside].astype(int)
    on_surface = (z[inside] >= low[row, col] - tolerance) & (z[inside] <= high[row, col] + tolerance)
    seen[np.flatnonzero(inside)[on_surface]] = True
  return seen


def keep_vertices(vertices, faces, kept):
  """The mesh without the vertices where `kept` [V] is False and the faces that use them: (vertices [V', 3],
  faces [F', 3] re-indexed, kept)."""
  faces = faces[np.all(kept[faces], axis=1)]
  new_index = np.cumsum(kept) - 1
  return vertices[kept], new_index[faces], kept


def largest_components(faces, num_vertices, count):
  """[V] bool: the vertices of the `count` connected components (through shared vertices) with the most faces.
  Needs scipy (which scikit-image, of the export extra, brings)."""
  from scipy.sparse import coo_matrix  # pylint: disable=import-outside-toplevel
  from scipy.sparse.csgraph import connected_components  # pylint: disable=import-outside-toplevel
  edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
  graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
  _, labels = connected_components(graph, directed=False)
  sizes = np.bincount(labels[faces[:, 0]], minlength=labels.max() + 1)
  largest = np.argsort(-sizes, kind="stable")[:count]
  return np.isin(labels, largest[sizes[largest] > 0])


def inside_box(points, scene_box):
  """[n] bool: points inside the box (min x, y, z, max x, y, z)."""
  lo, hi = np.asarray(scene_box[:3]), np.asarray(scene_box[3:])
  return np.all((points >= lo) & (points <= hi), axis=-1)
