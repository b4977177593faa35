"""Mesh and point-cloud export: an analytic sphere through the renderer's field_at and compositing, the files read
back by hand, the scene normalisation and NDC undone, and export.py end to end on a tiny demo run."""
import dataclasses
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, TINY, random_rotation

pytest.importorskip("skimage")  # the [export] extra
pytest.importorskip("trimesh")

from jaxnerf.run import export as export_lib
from jaxnerf.run import train as train_lib
from jaxnerf.data import loaders
from jaxnerf.nerf import model as model_lib
from jaxnerf.core import rays as rays_lib
from jaxnerf.run import rendering as render
from jaxnerf.nerf import sampling
from jaxnerf.data import views as views_lib
from jaxnerf.errors import ConfigError
from jaxnerf.data import scene as scene_lib
from jaxnerf.run import workdir as workdir_lib

sys.path.insert(0, os.path.join(REPO, "configs"))
import demo_fast  # noqa: E402

RADIUS = 0.8
SURFACE_DENSITY = 50.0
BASE_COLOR = np.array([0.6, 0.3, 0.5])
VIEW_TINT = 0.2  # colour = BASE_COLOR + VIEW_TINT * view direction: tells which way a vertex was looked at


class SphereField(nn.Module):
  """A ball of radius RADIUS: density falls linearly through SURFACE_DENSITY at the surface, over any threshold
  between 0 and 2 SURFACE_DENSITY; colour BASE_COLOR plus a view-dependent tint. No parameters."""
  density_activation = staticmethod(lambda raw: raw)

  def __call__(self, points, viewdirs, appearance=None):
    radius = jnp.linalg.norm(points, axis=-1)
    density = SURFACE_DENSITY * jnp.clip(2.0 - radius / RADIUS, 0.0, 2.0)
    rgb = jnp.broadcast_to(jnp.asarray(BASE_COLOR, jnp.float32) + VIEW_TINT * viewdirs[..., None, :],
                           points.shape)
    return rgb, density


class SolidSphereField(nn.Module):
  """An opaque ball (density 1e4 inside RADIUS, 0 outside) of colour BASE_COLOR: a sharp surface for depth."""
  density_activation = staticmethod(lambda raw: raw)

  def __call__(self, points, viewdirs, appearance=None):
    inside = jnp.linalg.norm(points, axis=-1) < RADIUS
    return jnp.broadcast_to(jnp.asarray(BASE_COLOR, jnp.float32), points.shape), jnp.where(inside, 1e4, 0.0)


def renderer_of(field, num_samples=8):
  return model_lib.Renderer(fields=(field,), samplers=(sampling.Stratified(num_samples),), level_fields=(0,))


def field_fn_of(renderer):
  """The field function export_lib takes, through Renderer.field_at as export() makes it."""
  return jax.tree_util.Partial(lambda p, d: renderer.apply({}, p, d, method="field_at"))


@pytest.fixture(scope="module")
def sphere_mesh():
  axes, voxel = export_lib.grid_axes((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 48)
  field_fn = field_fn_of(renderer_of(SphereField()))
  grid = export_lib.density_grid(field_fn, axes, chunk=4096, progress=False)
  vertices, faces, normals = export_lib.marching_cubes(grid, axes, SURFACE_DENSITY)
  colors = export_lib.surface_colors(field_fn, vertices, normals, export_lib.COLOR_OFFSET * voxel, chunk=2**14,
                                     progress=False)
  return vertices, faces, normals, colors, voxel


def test_grid_axes_cubic_voxels():
  axes, voxel = export_lib.grid_axes((-1.0, 0.0, 2.0, 1.0, 0.5, 2.25), 9)
  assert voxel == 0.25
  assert [len(a) for a in axes] == [9, 3, 2]
  np.testing.assert_allclose(axes[1], [0.0, 0.25, 0.5])
  np.testing.assert_allclose(axes[2], [2.0, 2.25])


def test_density_grid_matches_field_at_every_point():
  # A box unlike the sphere's symmetry, so that a mix-up of axes shows; chunks that do not divide the 7 x 5 x 3
  # points: the last one is padded.
  axes, _ = export_lib.grid_axes((-1.0, -0.5, 0.0, 2.0, 1.5, 1.0), 7)
  grid = export_lib.density_grid(field_fn_of(renderer_of(SphereField())), axes, chunk=50, progress=False)
  x, y, z = np.meshgrid(*axes, indexing="ij")
  expected = SURFACE_DENSITY * np.clip(2.0 - np.sqrt(x**2 + y**2 + z**2) / RADIUS, 0.0, 2.0)
  np.testing.assert_allclose(grid, expected, rtol=1e-5, atol=1e-4)


def test_sphere_mesh_vertices_on_the_sphere(sphere_mesh):
  vertices, faces, _, _, voxel = sphere_mesh
  radii = np.linalg.norm(vertices, axis=-1)
  assert len(vertices) > 1000
  assert np.max(np.abs(radii - RADIUS)) < voxel / 2
  # Closed, and wound counter-clockwise seen from outside: the signed volume is the ball's.
  edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
  _, edge_uses = np.unique(edges, axis=0, return_counts=True)
  assert np.all(edge_uses == 2)
  a, b, c = (vertices[faces[:, i]] for i in range(3))
  signed_volume = np.sum(np.einsum("ij,ij->i", a, np.cross(b, c))) / 6
  np.testing.assert_allclose(signed_volume, 4 / 3 * np.pi * RADIUS**3, rtol=0.02)


def test_sphere_mesh_normals_and_colours(sphere_mesh):
  vertices, _, normals, colors, _ = sphere_mesh
  outward = vertices / np.linalg.norm(vertices, axis=-1, keepdims=True)
  assert np.min(np.sum(normals * outward, axis=-1)) > 0.99
  # Seen from outside, along -normal: the tint of the view direction -outward.
  np.testing.assert_allclose(colors, BASE_COLOR - VIEW_TINT * outward, atol=0.01)


def read_ply(path):
  """A binary little-endian PLY's elements as numpy structured arrays, parsed here from its header."""
  types = {"float": "<f4", "double": "<f8", "uchar": "u1", "int": "<i4", "uint": "<u4"}
  with open(path, "rb") as f:
    assert f.readline().strip() == b"ply"
    elements = []
    while (line := f.readline().decode().split())[0] != "end_header":
      if line[0] == "format":
        assert line[1] == "binary_little_endian"
      elif line[0] == "element":
        elements.append((line[1], int(line[2]), []))
      elif line[0] == "property" and line[1] == "list":
        elements[-1][2].append(("count", types[line[2]]))
        elements[-1][2].append((line[4], types[line[3]], (3,)))  # triangles
      elif line[0] == "property":
        elements[-1][2].append((line[2], types[line[1]]))
    data = {}
    for name, count, fields in elements:
      dtype = np.dtype(fields)
      data[name] = np.frombuffer(f.read(dtype.itemsize * count), dtype)
    assert f.read() == b""
  return data


def test_mesh_files_read_back(tmp_path, sphere_mesh):
  vertices, faces, _, colors, _ = sphere_mesh
  ply, obj = str(tmp_path / "sphere.ply"), str(tmp_path / "sphere.obj")
  export_lib.write_mesh(ply, "ply", vertices, faces, colors)
  export_lib.write_mesh(obj, "obj", vertices, faces, colors)
  assert sorted(os.listdir(tmp_path)) == ["sphere.obj", "sphere.ply"]  # no partial files left
  data = read_ply(ply)
  vertex = data["vertex"]
  np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], -1), vertices, atol=1e-6)
  np.testing.assert_array_equal(np.stack([vertex["red"], vertex["green"], vertex["blue"]], -1),
                                np.round(colors * 255))
  np.testing.assert_array_equal(data["face"]["vertex_indices"], faces)

  lines = [line.split() for line in open(obj) if line.strip()]
  v = np.array([line[1:] for line in lines if line[0] == "v"], np.float64)
  f = np.array([[int(i.split("/")[0]) - 1 for i in line[1:]] for line in lines if line[0] == "f"])
  np.testing.assert_allclose(v[:, :3], vertices, atol=1e-6)
  np.testing.assert_allclose(v[:, 3:6], np.round(colors * 255) / 255, atol=2e-3)
  np.testing.assert_array_equal(f, faces)


def camera_rays(position, width=48, focal=16.0):
  """Rays of a wide-angle pinhole camera at `position` looking at the origin: [width * width, 3] numpy Rays, with
  directions far from unit length at the image's edges."""
  back = position / np.linalg.norm(position)
  right = np.cross([0.0, 0.0, 1.0], back)
  right /= np.linalg.norm(right)
  cam_to_world = np.stack([right, np.cross(back, right), back, position], axis=1).astype(np.float32)
  views = views_lib.Views(np.zeros((1, width, width, 3), np.float32), cam_to_world[None], focal, 2.0, 6.0, ["v"])
  return jax.tree.map(lambda x: x.reshape(-1, x.shape[-1]), views.image_rays(0))


def ray_sphere_hits(rays):
  """Distance t along each ray's direction to the sphere of RADIUS, in float64 (nan where it misses)."""
  o, d = np.asarray(rays.origins, np.float64), np.asarray(rays.directions, np.float64)
  a, b, c = np.sum(d * d, -1), 2 * np.sum(o * d, -1), np.sum(o * o, -1) - RADIUS**2
  disc = b * b - 4 * a * c
  return np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.nan)


def test_point_cloud_of_a_rendered_sphere_lies_on_it():
  renderer = renderer_of(SolidSphereField(), num_samples=1024)
  near, far = 1.0, 4.0
  render_chunk = render.make_render_chunk(renderer, scene_lib.Scene(near, far, (-2.0,) * 3 + (2.0,) * 3))
  background = (1.0, 1.0, 1.0)
  for position in ([2.2, 0.0, 0.0], [0.0, -1.5, 1.5], [-1.3, 1.3, -1.3]):
    rays = camera_rays(np.array(position))
    rendered = render.render_rays(render_chunk, {}, rays, 256)
    points, colors = export_lib.opaque_points(rays, rendered, 0.95, background)
    hits = ray_sphere_hits(rays)
    assert len(points) == np.sum(np.isfinite(hits)) > 100  # the opaque rays are the ones that hit
    norms = np.asarray(np.linalg.norm(rays.directions, axis=-1))
    spacing = (far - near) / 1023 * norms.max()
    assert np.max(np.abs(np.linalg.norm(points, axis=-1) - RADIUS)) < spacing
    np.testing.assert_allclose(colors, np.broadcast_to(BASE_COLOR, colors.shape), atol=1e-4)


def test_opaque_points_divide_by_opacity_and_remove_background():
  rays = camera_rays(np.array([0.1, 0.0, 3.0]), width=4, focal=4.0)
  hits = np.nan_to_num(ray_sphere_hits(rays), nan=5.0)
  acc = np.linspace(0.5, 1.0, len(hits))
  background = np.array([0.2, 0.9, 0.1])
  rendered = {"depth": acc * hits, "acc": acc, "rgb": acc[:, None] * BASE_COLOR + (1 - acc[:, None]) * background}
  points, colors = export_lib.opaque_points(rays, rendered, 0.75, background)
  keep = acc >= 0.75
  expected = np.asarray(rays.origins)[keep] + hits[keep, None] * np.asarray(rays.directions)[keep]
  np.testing.assert_allclose(points, expected, atol=1e-5)
  np.testing.assert_allclose(colors, np.broadcast_to(BASE_COLOR, colors.shape), atol=1e-6)


def test_scene_normalisation_undone(tmp_path, rng):
  """A run's normalisation comes from its scene.json, or for runs written before scene.json from the one their
  config.json recorded, else from the loader; the mesh maps back through its inverse."""
  scene_from_world = np.eye(4)
  scene_from_world[:3, :3] = 0.37 * random_rotation(rng)
  scene_from_world[:3, 3] = rng.normal(size=3)
  views = views_lib.Views(np.zeros((1, 2, 2, 3), np.float32), np.eye(4)[None, :3], 1.0, 0.1, 1.0, ["v"])
  loaded = scene_lib.of_views(views, (-1.0,) * 3 + (1.0,) * 3, (1.0, 1.0, 1.0))
  old_run, new_run = tmp_path / "old", tmp_path / "new"
  old_run.mkdir()
  with open(old_run / "config.json", "w") as f:
    json.dump({"data": {"transforms": {"scene_from_world": list(scene_from_world.ravel())}}}, f)
  recorded = workdir_lib.run_scene(str(old_run), loaded).scene_from_world_matrix
  np.testing.assert_array_equal(recorded, scene_from_world)
  new_run.mkdir()
  workdir_lib.write_scene(dataclasses.replace(loaded, scene_from_world=tuple(scene_from_world.ravel())), str(new_run))
  np.testing.assert_array_equal(workdir_lib.run_scene(str(new_run), loaded).scene_from_world_matrix, scene_from_world)
  world = rng.normal(size=(50, 3))
  scene = world @ scene_from_world[:3, :3].T + scene_from_world[:3, 3]
  faces = rng.integers(0, 50, size=(20, 3))
  back, same_faces, kept = export_lib.mesh_in_world(scene, faces, views, np.linalg.inv(recorded))
  np.testing.assert_allclose(back, world, rtol=0, atol=1e-12)
  np.testing.assert_array_equal(same_faces, faces)
  assert kept.all()
  # Old Blender and LLFF runs recorded none: the loader's own (identity).
  np.testing.assert_array_equal(workdir_lib.run_scene(str(tmp_path / "nothing"), loaded).scene_from_world_matrix,
                                np.eye(4))


def test_ndc_undone(rng):
  width, height, focal = 40.0, 30.0, 35.0
  points = np.stack([rng.uniform(-2, 2, 64), rng.uniform(-2, 2, 64), rng.uniform(-30, -1.5, 64)], axis=-1)
  # The NDC image of a point: along the NDC image of the ray from the camera through it, at its NDC depth.
  directions = points / -points[:, 2:]
  ray = rays_lib.Rays(np.zeros_like(points), directions, directions)
  ndc = rays_lib.to_ndc(ray, width, height, focal)
  depth = 1.0 + 2.0 / points[:, 2]
  t = (depth - ndc.origins[:, 2]) / ndc.directions[:, 2]
  ndc_points = ndc.origins + t[:, None] * ndc.directions
  np.testing.assert_allclose(export_lib.ndc_to_scene(ndc_points, width, height, focal), points, rtol=1e-9)
  # A mesh reaching infinite depth loses those vertices and their faces.
  views = views_lib.Views(np.zeros((1, 30, 40, 3), np.float32), np.eye(4)[None, :3], focal, 0.0, 1.0, ["v"],
                          ndc=True)
  vertices = np.concatenate([ndc_points[:3], [[0.0, 0.0, 1.0]]])
  mesh_vertices, faces, kept = export_lib.mesh_in_world(vertices, np.array([[0, 1, 2], [1, 2, 3]]), views,
                                                        np.eye(4))
  np.testing.assert_array_equal(kept, [True, True, True, False])
  np.testing.assert_array_equal(faces, [[0, 1, 2]])
  np.testing.assert_allclose(mesh_vertices, points[:3], rtol=1e-9)


def test_uniform_sample():
  sample = export_lib.UniformSample(300, seed=1)
  for start in range(0, 3000, 250):
    sample.add(np.arange(start, start + 250), np.arange(start, start + 250) * 2)
  items, doubled = sample.result()
  assert len(items) == len(np.unique(items)) == 300 and np.array_equal(doubled, items * 2)
  counts = np.bincount(items // 250, minlength=12)  # 25 expected from each batch
  assert counts.min() >= 10 and counts.max() <= 40, counts
  everything = export_lib.UniformSample(0)
  everything.add(np.arange(5))
  everything.add(np.arange(5, 7))
  np.testing.assert_array_equal(everything.result()[0], np.arange(7))


def test_thresholds_and_formats():
  axes, _ = export_lib.grid_axes((-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), 5)
  with pytest.raises(ConfigError, match=r"--threshold: the density does not cross 200 .* from 0 to 2"):
    export_lib.marching_cubes(np.linspace(0, 2, 125).reshape(5, 5, 5), axes, 200.0)
  assert export_lib.output_format("mesh", "out/lego.OBJ", "") == "obj"
  assert export_lib.output_format("mesh", None, "") == "ply"
  with pytest.raises(ConfigError, match=r"--output=a\.ply: its extension does not match --format=obj"):
    export_lib.output_format("mesh", "a.ply", "obj")
  with pytest.raises(ConfigError, match=r"--format=obj: a pointcloud is written as ply"):
    export_lib.output_format("pointcloud", None, "obj")
  with pytest.raises(ConfigError, match=r"--output=a\.stl: a mesh is written as ply or obj"):
    export_lib.output_format("mesh", "a.stl", "")


def run(*args):
  return subprocess.run([sys.executable, os.path.join(REPO, *args[:1]), *TINY, *args[1:]], capture_output=True,
                        text=True, timeout=300)


def test_export_py_end_to_end(tmp_path):
  workdir = str(tmp_path / "demo")
  assert run("train.py", f"--workdir={workdir}").returncode == 0
  result = run("export.py", f"--workdir={workdir}", "--what=mesh", "--resolution=12", "--threshold=1e-4",
               "--format=obj")
  assert result.returncode == 0, result.stderr
  mesh = os.path.join(workdir, "export", "mesh_2.obj")
  assert f"written to {mesh}" in result.stdout
  vertices = np.array([line.split()[1:4] for line in open(mesh) if line.startswith("v ")], np.float64)
  assert len(vertices) > 0 and np.all(np.abs(vertices) <= 1.5 + 1e-6)  # inside the demo's scene box
  result = run("export.py", f"--workdir={workdir}", "--what=pointcloud", "--stride=50", "--factor=10",
               "--min_opacity=1e-6", "--num_points=30", f"--output={tmp_path / 'cloud.ply'}")
  assert result.returncode == 0, result.stderr
  assert len(read_ply(tmp_path / "cloud.ply")["vertex"]) == 30  # of 2 views of 10x10 pixels
  before = sorted(os.listdir(workdir))
  for args, message in [(["--what=volume"], "--what: expected one of ('mesh', 'pointcloud'), got 'volume'"),
                        (["--resolution=12", "--threshold=1e9"], "--threshold: the density does not cross 1e+09"),
                        (["--workdir=" + str(tmp_path / "empty")], f"{tmp_path / 'empty'}: no checkpoint")]:
    bad = run("export.py", f"--workdir={workdir}", *args)
    # The last line, after any progress bar (whose updates end in carriage returns); no traceback.
    lines = [line for line in bad.stderr.strip().splitlines() if not line.startswith("density grid")]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), bad.stderr
  assert sorted(os.listdir(workdir)) == before
  assert not os.path.exists(tmp_path / "empty" / "export")


def test_surface_colours_of_a_nearly_transparent_segment(sphere_mesh):
  # A segment far too short to be opaque: the light left over takes the colour at the vertex, not black.
  vertices, _, normals, _, _ = sphere_mesh
  field_fn = field_fn_of(renderer_of(SphereField()))
  colors = export_lib.surface_colors(field_fn, vertices[:500], normals[:500], 1e-3, chunk=2**12, progress=False)
  outward = vertices[:500] / np.linalg.norm(vertices[:500], axis=-1, keepdims=True)
  np.testing.assert_allclose(colors, BASE_COLOR - VIEW_TINT * outward, atol=0.01)


def visual_hull_box(views, resolution=96):
  """The float64 bounding box [2, 3] of the points of the demo's scene box that every training view sees inside
  the object's silhouette (alpha >= 0.5, nearest pixel; points outside a view's image are not constrained by it):
  an upper bound of the object from the photos alone, independent of any model."""
  axis = np.linspace(-1.5, 1.5, resolution)
  points = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
  inside = np.ones(len(points), bool)
  for pose, alpha in zip(views.cam_to_world.astype(np.float64), views.alpha):
    camera = (points - pose[:3, 3]) @ pose[:3, :3]  # OpenGL camera axes: x right, y up, looking along -z
    depth = -camera[:, 2]
    column = np.floor(views.focal * camera[:, 0] / depth + views.width / 2).astype(int)
    row = np.floor(-views.focal * camera[:, 1] / depth + views.height / 2).astype(int)
    seen = (depth > 0) & (column >= 0) & (column < views.width) & (row >= 0) & (row < views.height)
    inside[seen] &= alpha[row[seen], column[seen]] >= 0.5
  assert inside.any()
  return np.stack([points[inside].min(0), points[inside].max(0)])


def test_demo_mesh_sits_inside_the_legos_silhouettes(tmp_path):
  """A briefly trained fast model of the demo exports a mesh that lies within the visual hull's box of the lego
  and spans most of it."""
  config = demo_fast.get_config()
  config.model.hash.num_levels, config.model.hash.log2_table_size, config.model.hash.max_resolution = 8, 14, 128
  config.model.proposal.num_samples, config.model.proposal.num_final_samples = (32,), 16
  config.train.batch_size, config.train.max_steps, config.train.checkpoint_every = 512, 300, 300
  config.occupancy.resolution = 32
  config.eval.chunk = 4096
  workdir = str(tmp_path / "demo")
  train_lib.train_and_evaluate(config, workdir)
  hull = visual_hull_box(loaders.load_views(config, "train"))
  voxel = 3.0 / 95
  # The lego: about 1.3 x 2.3 x 1.3 scene units, off-centre in y and z.
  assert np.all(hull[1] - hull[0] > 1.0) and np.all(hull[1] - hull[0] < 2.6)
  result = export_lib.export(config, workdir, "mesh", resolution=64, threshold=10.0)
  assert result["vertices"] > 1000
  vertex = read_ply(result["path"])["vertex"]
  vertices = np.stack([vertex["x"], vertex["y"], vertex["z"]], -1).astype(np.float64)
  outside = np.any((vertices < hull[0] - 2 * voxel) | (vertices > hull[1] + 2 * voxel), axis=1)
  assert outside.mean() < 0.005, (outside.mean(), hull, vertices.min(0), vertices.max(0))
  # It reaches the hull's sides, except its bottom: the cameras, all above the lego's base, carve that loosely.
  np.testing.assert_allclose(vertices.max(0), hull[1], atol=0.1)
  np.testing.assert_allclose(vertices.min(0)[:2], hull[0, :2], atol=0.1)
  assert hull[0, 2] < vertices.min(0)[2] < hull[0, 2] + 0.25
