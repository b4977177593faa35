"""Geometry out of a trained run: a coloured mesh (marching cubes on the finest field's density) or a coloured point
cloud (the rendered depth of the training views), in the input's frame, as PLY or OBJ.

A field function here is `(points [..., 3], viewdirs [..., 3] or None) -> (rgb [..., 3] or None, density [...])`
with density after its activation, as Renderer.field_at gives it; the functions below take any such function, so
that analytic fields test them. A jax.tree_util.Partial holding the function's parameters passes them to the
compiled calls as arguments rather than as constants baked into the program.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jaxnerf import config as config_lib
from jaxnerf import storage
from jaxnerf.core import compositing
from jaxnerf.data import images
from jaxnerf.data import loaders
from jaxnerf.errors import ConfigError
from jaxnerf.errors import UserError
from jaxnerf.run import geometry_cleanup as cleanup_lib
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import workdir as workdir_lib

WHATS = ("mesh", "pointcloud")
FORMATS = {"mesh": ("ply", "obj"), "pointcloud": ("ply",)}
# Points per field call: bounds memory (about 100 MB for the fast model's field) at any grid resolution.
POINTS_PER_CALL = 2**16
# Vertex colours: a short ray looks at each vertex from COLOR_OFFSET voxels outside, through COLOR_SAMPLES samples
# over twice that length, so that a soft surface shows the colour a camera would see rather than that of the
# semi-transparent shell where the density crosses the threshold.
COLOR_OFFSET = 2.0
COLOR_SAMPLES = 16
# Culling: a vertex within this many voxels of a camera's rendered surface is that surface.
CULL_TOLERANCE = 3.0
# NDC depth 1 is infinitely far: vertices and points beyond this are dropped when mapping NDC back to the scene.
MAX_NDC_DEPTH = 0.999


def import_skimage_measure():
  try:
    import skimage.measure  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError("export.py needs scikit-image for marching cubes: pip install \"jaxnerf[export]\"") from None
  return skimage.measure


def import_trimesh():
  try:
    import trimesh  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError("export.py needs trimesh to write meshes and point clouds: pip install \"jaxnerf[export]\"") \
        from None
  return trimesh


def as_partial(field_fn):
  return field_fn if isinstance(field_fn, jax.tree_util.Partial) else jax.tree_util.Partial(field_fn)


def grid_axes(scene_box, resolution):
  """Sample positions along x, y and z of a grid over the box with cubic voxels and `resolution` samples along its
  longest side (both faces included).

  Args:
    scene_box: (min x, y, z, max x, y, z).
    resolution: samples along the longest side, >= 2.

  Returns:
    Three float64 arrays [n_x], [n_y], [n_z] and the voxel size (the spacing of the longest side).
  """
  lo, hi = np.asarray(scene_box[:3], np.float64), np.asarray(scene_box[3:], np.float64)
  voxel = np.max(hi - lo) / (resolution - 1)
  counts = np.maximum(np.round((hi - lo) / voxel).astype(int) + 1, 2)
  return [np.linspace(lo[i], hi[i], counts[i]) for i in range(3)], voxel


def density_grid(field_fn, axes, chunk=POINTS_PER_CALL, progress=True):
  """The field's density at every grid point, computed chunk by chunk through one compiled shape.

  Args:
    field_fn: a field function (see the module docstring).
    axes: [n_x], [n_y], [n_z] sample positions (grid_axes).
    chunk: points per call.
    progress: show a progress bar.

  Returns:
    [n_x, n_y, n_z] float32 densities.
  """
  shape = tuple(len(a) for a in axes)
  total = int(np.prod(shape))
  density_of = jax.jit(lambda field, points: field(points, None)[1])
  field_fn = as_partial(field_fn)
  grid = np.empty(total, np.float32)
  for start in tqdm.trange(0, total, chunk, unit="call", desc="density grid", dynamic_ncols=True,
                           disable=not progress):
    index = np.unravel_index(np.arange(start, min(start + chunk, total)), shape)
    points = np.stack([axes[i][index[i]] for i in range(3)], axis=-1).astype(np.float32)
    count = len(points)
    points = np.pad(points, ((0, chunk - count), (0, 0)), mode="edge")
    grid[start:start + count] = np.asarray(density_of(field_fn, points))[:count]
  return grid.reshape(shape)


def marching_cubes(grid, axes, threshold):
  """The surface where the density crosses `threshold`, faces wound counter-clockwise seen from outside.

  Args:
    grid: [n_x, n_y, n_z] densities at the points of `axes`.
    axes: [n_x], [n_y], [n_z] sample positions, evenly spaced.
    threshold: density of the surface.

  Returns:
    vertices [V, 3] float64 (scene coordinates), faces [F, 3] int, normals [V, 3] unit, pointing outward (towards
    lower density).

  Raises ConfigError if the density does not cross the threshold anywhere on the grid.
  """
  low, high = float(np.min(grid)), float(np.max(grid))
  if not low < threshold < high:
    raise ConfigError(f"--threshold: the density does not cross {threshold:g} in the scene box (it ranges from "
                      f"{low:.4g} to {high:.4g} there); pick a threshold in that range")
  spacing = tuple(float(a[1] - a[0]) for a in axes)
  # "descent": the object is where the density is above the threshold; skimage's normals then point out of it,
  # and its faces are wound the other way round, hence the flip.
  vertices, faces, normals, _ = import_skimage_measure().marching_cubes(grid, level=threshold, spacing=spacing,
                                                                        gradient_direction="descent")
  vertices = vertices.astype(np.float64) + np.array([a[0] for a in axes])
  normals = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
  return vertices, faces[:, ::-1].copy(), normals.astype(np.float64)


def surface_colors(field_fn, vertices, normals, offset, num_samples=COLOR_SAMPLES, chunk=POINTS_PER_CALL,
                   progress=True):
  """The colour a camera outside the surface sees at each vertex, looking along -normal.

  A ray starts `offset` outside the vertex and runs 2 `offset` inwards through `num_samples` intervals; the field
  (viewed along the ray) is alpha-composited over them, and what light is left takes the colour at the vertex's
  depth, so a vertex always gets the colour of the field there or in front of it.

  Args:
    field_fn: a field function (see the module docstring).
    vertices: [V, 3] points on the surface.
    normals: [V, 3] unit outward normals.
    offset: distance of the ray's start from the surface.
    num_samples: intervals along each ray.
    chunk: field points per call (vertices per call: chunk // num_samples).
    progress: show a progress bar.

  Returns:
    [V, 3] float32 colours in [0, 1].
  """
  edges = np.linspace(0.0, 2.0 * offset, num_samples + 1, dtype=np.float32)
  t = (edges[:-1] + edges[1:]) / 2
  surface_sample = int(np.argmin(np.abs(t - offset)))

  @jax.jit
  def colors_of(field, vertices, normals):
    directions = -normals
    origins = vertices + offset * normals
    points = origins[:, None, :] + t[None, :, None] * directions[:, None, :]
    viewdirs = jnp.broadcast_to(directions[:, None, :], points.shape)
    rgb, density = field(points, viewdirs)
    batch = (vertices.shape[0],)
    out = compositing.composite(rgb, density, jnp.broadcast_to(t, batch + t.shape),
                                jnp.broadcast_to(edges, batch + edges.shape), directions,
                                background=rgb[:, surface_sample])
    return out.rgb

  field_fn = as_partial(field_fn)
  per_call = max(1, chunk // num_samples)
  colors = np.empty((len(vertices), 3), np.float32)
  for start in tqdm.trange(0, len(vertices), per_call, unit="call", desc="vertex colours", dynamic_ncols=True,
                           disable=not progress):
    stop = min(start + per_call, len(vertices))
    pad = ((0, per_call - (stop - start)), (0, 0))
    piece = [np.pad(np.asarray(a[start:stop], np.float32), pad, mode="edge") for a in (vertices, normals)]
    colors[start:stop] = np.asarray(colors_of(field_fn, *piece))[:stop - start]
  return np.clip(colors, 0.0, 1.0)


def transform_points(matrix, points):
  """[..., 3] points through a [4, 4] affine matrix, in float64."""
  matrix = np.asarray(matrix, np.float64)
  return np.asarray(points, np.float64) @ matrix[:3, :3].T + matrix[:3, 3]


def ndc_to_scene(points, width, height, focal, near=1.0):
  """Inverse of the NDC map of rays.to_ndc: NDC points [..., 3] (depth below 1) -> scene points [..., 3].

  A scene point at depth z < 0 has NDC coordinates (-2 f / W * x / z, -2 f / H * y / z, 1 + 2 near / z).
  """
  points = np.asarray(points, np.float64)
  z = 2.0 * near / (points[..., 2] - 1.0)
  x = points[..., 0] * z / (-2.0 * focal / width)
  y = points[..., 1] * z / (-2.0 * focal / height)
  return np.stack([x, y, z], axis=-1)


def mesh_in_world(vertices, faces, views, world_from_scene):
  """Mesh vertices [V, 3] from the scene (NDC for forward-facing views) into the input's frame; vertices at
  infinite NDC depth are dropped with their faces. Returns (vertices [V', 3], faces [F', 3], kept [V] bool)."""
  kept = np.ones(len(vertices), bool)
  if views.ndc:
    kept = vertices[:, 2] < MAX_NDC_DEPTH
    vertices = ndc_to_scene(np.where(kept[:, None], vertices, 0.0), views.width, views.height, views.focal)
    faces = faces[np.all(kept[faces], axis=1)]
    new_index = np.cumsum(kept) - 1
    vertices, faces = vertices[kept], new_index[faces]
  return transform_points(world_from_scene, vertices), faces, kept


def opaque_points(rays, rendered, min_opacity, background):
  """Points where rendered rays are opaque, and their colours.

  The depth compositing.composite returns is the expected t along rays.directions (not necessarily unit) weighted
  by opacity, so the surface point is origin + (depth / acc) direction; the rendered colour holds (1 - acc) of
  the background, which is taken out again.

  Args:
    rays: Rays with [n, 3] origins and directions.
    rendered: dict with rgb [n, 3], depth and acc [n] (render.render_rays).
    min_opacity: keep rays with acc at least this (in (0, 1]).
    background: [3] colour the renders were composited onto.

  Returns:
    points [m, 3] float64 and colours [m, 3] float32 in [0, 1] (scene coordinates of the rays).
  """
  acc = np.asarray(rendered["acc"], np.float64)
  keep = acc >= min_opacity
  acc = acc[keep]
  t = np.asarray(rendered["depth"], np.float64)[keep] / acc
  points = np.asarray(rays.origins, np.float64)[keep] + t[:, None] * np.asarray(rays.directions, np.float64)[keep]
  rgb = np.asarray(rendered["rgb"], np.float64)[keep]
  colors = (rgb - (1.0 - acc[:, None]) * np.asarray(background, np.float64)) / acc[:, None]
  return points, np.clip(colors, 0.0, 1.0).astype(np.float32)


class UniformSample:
  """A uniform random sample of at most `size` items from batches seen one at a time (memory O(size + batch)):
  each item gets a random key and the `size` smallest keys are kept. size 0 keeps everything."""

  def __init__(self, size, seed=0):
    self.size = size
    self.rng = np.random.default_rng(seed)
    self.keys, self.items = np.zeros(0), None

  def add(self, *arrays):
    """Add a batch: arrays [n, ...] with the same n."""
    keys = self.rng.random(len(arrays[0]))
    if self.items is None:
      self.items = [a[:0] for a in arrays]
    self.keys = np.concatenate([self.keys, keys])
    self.items = [np.concatenate([kept, new]) for kept, new in zip(self.items, arrays)]
    if self.size and len(self.keys) > self.size:
      chosen = np.sort(np.argpartition(self.keys, self.size)[:self.size])
      self.keys, self.items = self.keys[chosen], [a[chosen] for a in self.items]

  def result(self):
    return self.items


def write_mesh(path, file_format, vertices, faces, colors):
  """Write a vertex-coloured triangle mesh as PLY (binary) or OBJ (vertex colours after each position); the file
  is complete or absent."""
  mesh = import_trimesh().Trimesh(vertices=vertices, faces=faces, vertex_colors=images.to_uint8(colors),
                                  process=False)
  with workdir_lib.written_in_place(path) as partial:
    mesh.export(partial, file_type=file_format)


def write_point_cloud(path, points, colors):
  """Write coloured points as a binary PLY; the file is complete or absent."""
  cloud = import_trimesh().PointCloud(points, colors=images.to_uint8(colors))
  with workdir_lib.written_in_place(path) as partial:
    cloud.export(partial, file_type="ply")


def output_format(what, output, file_format):
  """The file format: --format, else the output's extension, else PLY; ConfigError if they disagree or the
  format does not fit `what`."""
  extension = os.path.splitext(output)[1].lstrip(".").lower() if output else ""
  chosen = file_format or extension or "ply"
  if chosen not in FORMATS[what]:
    source = f"--format={file_format}" if file_format else f"--output={output}"
    raise ConfigError(f"{source}: a {what} is written as {' or '.join(FORMATS[what])}, got {chosen!r}")
  if file_format and extension and extension != file_format:
    raise ConfigError(f"--output={output}: its extension does not match --format={file_format}")
  return chosen


def check_options(what, resolution, min_opacity, num_points, stride, factor, cleanup=cleanup_lib.Cleanup()):
  checks = [(cleanup.cull_stride >= 1 and cleanup.cull_size >= 8, "--cull_stride/cull_size",
             f"a stride >= 1 and a size >= 8 pixels, got {cleanup.cull_stride} and {cleanup.cull_size}"),
            (cleanup.components >= 0, "--components", f"0 (all) or a positive number, got {cleanup.components}"),
            (what in WHATS, "--what", f"one of {WHATS}, got {what!r}"),
            (resolution >= 2, "--resolution", f"at least 2 grid points along the box's longest side, got {resolution}"),
            (0.0 < min_opacity <= 1.0, "--min_opacity", f"an opacity in (0, 1], got {min_opacity}"),
            (num_points >= 0, "--num_points", f"0 (all points) or a positive number, got {num_points}"),
            (stride >= 1, "--stride", f"an integer >= 1, got {stride}"),
            (factor >= 1, "--factor", f"an integer >= 1, got {factor}")]
  for ok, flag, expected in checks:
    if not ok:
      raise ConfigError(f"{flag}: expected {expected}")


def photo_opaque(views, view, factor, shape):
  """[h, w] bool: where the photo of `view`, area-downsampled by `factor` to `shape`, is at least half opaque
  (everywhere for views without alpha)."""
  if views.alpha is None:
    return np.ones(shape, bool)
  h, w = shape
  return views.alpha[view, :h * factor, :w * factor].reshape(h, factor, w, factor).mean(axis=(1, 3)) >= 0.5


def camera_depths(render_chunk, variables, views, cull_size, chunk):
  """geometry_cleanup.CameraDepth of each view, rendered with its long side near `cull_size` pixels. Where the
  photo itself is transparent (views with alpha), the camera sees empty space, whatever the field renders there: a
  field that explains a white background with white density is not surface."""
  factor = max(1, int(round(max(views.width, views.height) / cull_size)))
  cameras = []
  for i in range(len(views)):
    rendered = rendering.render_rays(render_chunk, variables, views.camera_rays(views.cam_to_world[i], factor, view=i),
                                     chunk)
    acc = rendered["acc"]
    opaque = (acc >= 0.5) & photo_opaque(views, i, factor, acc.shape)
    depth = np.where(opaque, rendered["depth"] / np.maximum(acc, 1e-6), np.nan)
    cameras.append(cleanup_lib.CameraDepth(views.cam_to_world[i], views.intrinsics[i] / factor, depth))
  return cameras


def export(config, workdir, what, output=None, file_format="", resolution=256, threshold=10.0, min_opacity=0.95,
           num_points=1_000_000, stride=1, factor=1, step=None, cleanup=cleanup_lib.Cleanup()):
  """Export the latest checkpoint in workdir (or the one of `step`) as a mesh or a point cloud in the input's
  frame (the inverse of the loader's scene normalisation, and of NDC for forward-facing scenes).

  mesh: marching cubes on the finest field's density sampled over the scene's box (scene.json), `resolution` points
  along its longest side, at density `threshold`, cleaned as `cleanup` says; vertex colours as surface_colors sees
  them.
  pointcloud: the training views (every `stride`-th, at 1/`factor` size) rendered; a point per pixel whose
  opacity is at least `min_opacity`, at its rendered depth, with its colour (within the scene box, as `cleanup`
  says); a uniform sample of `num_points` of them (0: all).

  Writes `output` (default DIR/export/<what>_<step>.<format>); only process 0 of a multi-process run writes.

  Returns:
    dict with "path", "step", "format" and "vertices" and "faces" (mesh) or "points" (point cloud).
  """
  config_lib.validate(config)
  check_options(what, resolution, min_opacity, num_points, stride, factor, cleanup)
  file_format = output_format(what, output, file_format)
  import_trimesh()  # a missing library fails here, before anything is computed
  if what == "mesh":
    import_skimage_measure()
  # The mesh renders the views it culls with; the point cloud the views it is made of.
  views_stride = stride if what == "pointcloud" else cleanup.cull_stride if cleanup.cull else 10**9
  views = loaders.load_views(config, "train", stride=views_stride)
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views))
  model, state = state_lib.restore_trained(config, workdir, scene, step)
  views = state_lib.refined_views(views, state, views_stride)  # the cameras as training refined them
  output = output or storage.join(workdir, "export", f"{what}_{int(state.step)}.{file_format}")
  result = {"step": int(state.step), "format": file_format, "path": output}
  render_chunk = rendering.make_render_chunk(model, scene, config)
  if what == "mesh":
    vertices, faces, colors = _mesh(config, model, state, scene, views, render_chunk, resolution, threshold, cleanup)
    vertices, faces, kept = mesh_in_world(vertices, faces, views, np.linalg.inv(scene.scene_from_world_matrix))
    if workdir_lib.is_lead_process():
      storage.makedirs(os.path.dirname(storage.absolute(output)))
      write_mesh(output, file_format, vertices, faces, colors[kept])
    return dict(result, vertices=len(vertices), faces=len(faces))
  points, colors = _point_cloud(config, state, scene, views, render_chunk, min_opacity, num_points, factor, cleanup)
  if len(points) == 0:
    raise UserError(f"{workdir}: no pixel of the training views is rendered with opacity >= {min_opacity}; lower "
                    "--min_opacity")
  points = transform_points(np.linalg.inv(scene.scene_from_world_matrix), points)
  if workdir_lib.is_lead_process():
    storage.makedirs(os.path.dirname(storage.absolute(output)))
    write_point_cloud(output, points, colors)
  return dict(result, points=len(points))


def _mesh(config, model, state, scene, views, render_chunk, resolution, threshold, cleanup):
  """Marching cubes over the scene box, cleaned: (vertices [V, 3], faces [F, 3], colours [V, 3]) in the scene."""
  lead = workdir_lib.is_lead_process()
  field_fn = jax.tree_util.Partial(
      lambda variables, points, viewdirs: model.apply(variables, points, viewdirs, method="field_at"),
      {"params": state.params})
  axes, voxel = grid_axes(scene.scene_box, resolution)
  vertices, faces, normals = marching_cubes(density_grid(field_fn, axes, progress=lead), axes, threshold)
  kept = np.ones(len(vertices), bool)
  if cleanup.cull and not views.ndc:
    cameras = camera_depths(render_chunk, rendering.render_variables(state, config, scene), views,
                            cleanup.cull_size, config.eval.chunk)
    kept = cleanup_lib.seen_as_surface(vertices, cameras, CULL_TOLERANCE * voxel)
  if cleanup.components:
    kept &= cleanup_lib.largest_components(faces[np.all(kept[faces], axis=1)], len(vertices), cleanup.components)
  vertices, faces, _ = cleanup_lib.keep_vertices(vertices, faces, kept)
  if len(faces) == 0:
    raise UserError("the mesh is empty once cleaned: no training camera sees it as surface (--cull=false keeps "
                    "everything)")
  colors = surface_colors(field_fn, vertices, normals[kept], COLOR_OFFSET * voxel, progress=lead)
  return vertices, faces, colors


def _point_cloud(config, state, scene, views, render_chunk, min_opacity, num_points, factor, cleanup):
  """Points of the rendered training views and their colours, (points [n, 3], colours [n, 3]) in the scene."""
  variables = {"params": state.params}
  sample = UniformSample(num_points)
  bounded = cleanup.in_box and not views.ndc and not config.model.contraction
  for i in tqdm.trange(len(views), unit="view", desc="rendering training views", dynamic_ncols=True,
                       disable=not workdir_lib.is_lead_process()):
    rays = views.camera_rays(views.cam_to_world[i], factor, view=i)
    flat = jax.tree.map(lambda x: x.reshape(-1, x.shape[-1]), rays)
    rendered = rendering.render_rays(render_chunk, variables, flat, config.eval.chunk)
    if cleanup.cull:  # no points where the photo shows the background
      rendered["acc"] = np.where(photo_opaque(views, i, factor, rays.origins.shape[:2]).reshape(-1), rendered["acc"], 0.0)
    points, colors = opaque_points(flat, rendered, min_opacity, scene.background)
    if views.ndc:
      near_enough = points[:, 2] < MAX_NDC_DEPTH
      points, colors = ndc_to_scene(points[near_enough], views.width, views.height, views.focal), colors[near_enough]
    if bounded:
      inside = cleanup_lib.inside_box(points, scene.scene_box)
      points, colors = points[inside], colors[inside]
    sample.add(points, colors)
  return sample.result()
