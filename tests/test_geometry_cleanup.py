"""Clean geometry: culling keeps what the training cameras see as surface and removes what they see as empty or
never see; connected components; the point cloud's box."""
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("skimage")  # the [export] extra (scipy comes with scikit-image)

from jaxnerf.data import scene as scene_lib
from jaxnerf.data import views as views_lib
from jaxnerf.run import export as export_lib
from jaxnerf.run import geometry_cleanup as cleanup
from jaxnerf.run import rendering
from test_export import RADIUS
from test_export import field_fn_of
from test_export import renderer_of

HIDDEN = np.array([-1.3, 0.0, 0.0])  # a blob behind the ball from every camera below (all on the +x side)


def looking_at_origin(position):
  back = position / np.linalg.norm(position)
  right = np.cross([0.0, 0.0, 1.0], back)
  right /= np.linalg.norm(right)
  return np.stack([right, np.cross(back, right), back, position], axis=1)


def test_a_point_counts_as_surface_only_at_the_rendered_depth():
  # One camera at the origin looking down -z; its render: a wall at depth 3 over the left half, nothing on the right.
  depth = np.full((8, 8), np.nan)
  depth[:, :4] = 3.0
  camera = cleanup.CameraDepth(np.eye(4)[:3], np.array([8.0, 8.0, 4.0, 4.0]), depth)
  x = -0.25  # projects into column 2: the wall, well away from its edge
  points = np.array([[x, 0.0, -3.0], [x, 0.0, -3.05], [x, 0.0, -1.0], [x, 0.0, -5.0], [x, 0.0, 3.0],
                     [1.0, 0.0, -3.0], [-30.0, 0.0, -3.0]])
  seen = cleanup.seen_as_surface(points, [camera], tolerance=0.1)
  # on the wall, within the tolerance; in front of it (seen as empty); behind it (hidden); behind the camera;
  # where the render is empty; outside the image.
  np.testing.assert_array_equal(seen, [True, True, False, False, False, False, False])


def test_the_neighbourhood_lets_a_silhouette_vertex_match_the_pixel_beside_it():
  depth = np.full((5, 5), np.nan)
  depth[2, 2] = 4.0
  low, high = cleanup.neighbourhood_range(depth)
  assert low[1, 1] == high[1, 1] == 4.0 and np.isnan(low[0, 0])
  depth[2, 3] = 6.0
  low, high = cleanup.neighbourhood_range(depth)
  assert (low[2, 2], high[2, 2]) == (4.0, 6.0) and (low[2, 4], high[2, 4]) == (6.0, 6.0)


class BallAndHiddenBlob(nn.Module):
  """An opaque ball of RADIUS at the origin and a small opaque blob at HIDDEN, behind it."""
  density_activation = staticmethod(lambda raw: raw)

  def __call__(self, points, viewdirs, appearance=None):
    ball = jnp.linalg.norm(points, axis=-1) < RADIUS
    blob = jnp.linalg.norm(points - HIDDEN, axis=-1) < 0.2
    return jnp.full(points.shape, 0.5), jnp.where(ball | blob, 1e3, 0.0)


def test_culling_removes_geometry_no_camera_sees():
  renderer = renderer_of(BallAndHiddenBlob(), num_samples=256)
  box = (-1.6, -1.0, -1.0, 1.0, 1.0, 1.0)
  axes, voxel = export_lib.grid_axes(box, 64)
  grid = export_lib.density_grid(field_fn_of(renderer), axes, chunk=4096, progress=False)
  vertices, faces, _ = export_lib.marching_cubes(grid, axes, 500.0)
  near_blob = np.linalg.norm(vertices - HIDDEN, axis=-1) < 0.35
  assert near_blob.sum() > 20  # marching cubes found the blob
  positions = [[3.0, 0.0, 0.0], [2.5, 1.2, 0.5], [2.5, -1.2, -0.5], [2.6, 0.3, 1.3]]
  views = views_lib.Views(np.zeros((4, 32, 32, 3), np.float32),
                          np.stack([looking_at_origin(np.array(p)) for p in positions]).astype(np.float32),
                          24.0, 1.0, 6.0, ["a", "b", "c", "d"])
  scene = scene_lib.Scene(1.0, 6.0, box)
  cameras = export_lib.camera_depths(rendering.make_render_chunk(renderer, scene), {}, views, 32, 1024)
  seen = cleanup.seen_as_surface(vertices, cameras, 3 * voxel)
  assert not seen[near_blob].any()
  # The ball's side that faces the cameras stays; its far side, which no camera sees, goes too.
  facing = (vertices[:, 0] > 0.5) & ~near_blob
  assert seen[facing].mean() > 0.95
  assert not seen[vertices[:, 0] < -0.3].any()
  kept_vertices, kept_faces, _ = cleanup.keep_vertices(vertices, faces, seen)
  assert len(kept_vertices) == seen.sum() and kept_faces.max() < len(kept_vertices)
  np.testing.assert_array_equal(kept_vertices[kept_faces], vertices[faces[np.all(seen[faces], axis=1)]])


def test_largest_components():
  # A square of two triangles (vertices 0-3), a lone triangle (4-6), a vertex in no face (7).
  faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
  np.testing.assert_array_equal(cleanup.largest_components(faces, 8, 1), [1, 1, 1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(cleanup.largest_components(faces, 8, 2), [1, 1, 1, 1, 1, 1, 1, 0])


def test_inside_box():
  points = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.6, 0.0, 0.0], [0.0, -2.0, 0.0]])
  np.testing.assert_array_equal(cleanup.inside_box(points, (-1.5,) * 3 + (1.5,) * 3), [1, 1, 0, 0])


def test_transparent_photo_pixels_are_empty_space_whatever_the_field_renders():
  """A field that renders an opaque ball everywhere it is seen, but whose photo is transparent on the right half:
  the camera sees empty space there (a field explaining a white background with white density is no surface)."""
  renderer = renderer_of(BallAndHiddenBlob(), num_samples=64)
  alpha = np.ones((1, 32, 32), np.float32)
  alpha[:, :, 16:] = 0.0
  views = views_lib.Views(np.zeros((1, 32, 32, 3), np.float32), looking_at_origin(np.array([3.0, 0.0, 0.0]))[None]
                          .astype(np.float32), 24.0, 1.0, 6.0, ["a"], alpha=alpha)
  render_chunk = rendering.make_render_chunk(renderer, scene_lib.Scene(1.0, 6.0, (-1.6,) * 3 + (1.6,) * 3))
  (camera,) = export_lib.camera_depths(render_chunk, {}, views, 32, 1024)
  ball = np.isfinite(camera.depth[:, :16])
  assert ball.sum() > 50 and not np.isfinite(camera.depth[:, 16:]).any()
  np.testing.assert_array_equal(export_lib.photo_opaque(views, 0, 2, (16, 16))[:, :8], True)
  np.testing.assert_array_equal(export_lib.photo_opaque(views, 0, 2, (16, 16))[:, 8:], False)
