import numpy as np

import jaxnerf
from jaxnerf.data import batching
from jaxnerf.data import blender


def demo_views():
  return blender.load_split(jaxnerf.DEMO_SCENE, "test")


def locate(views, rays):
  """Brute force: recover (view, x, y) of each ray by projecting a point on it into every camera."""
  found = []
  for origin, direction in zip(rays.origins, rays.directions):
    view = int(np.argmin(np.linalg.norm(views.cam_to_world[:, :, 3] - origin, axis=-1)))
    rotation = views.cam_to_world[view, :, :3]
    cam = rotation.T @ direction
    x = views.focal * cam[0] / -cam[2] + views.width / 2 - 0.5
    y = -views.focal * cam[1] / -cam[2] + views.height / 2 - 0.5
    found.append((view, int(round(x)), int(round(y))))
  return found


def test_batches_hold_the_colour_of_their_rays_pixel():
  views = demo_views()
  batch = batching.RayBatcher(views, 64, seed=1)(5)
  assert batch["rays"].origins.shape == (64, 3) and batch["rgb"].shape == (64, 3)
  for k, (view, x, y) in enumerate(locate(views, batch["rays"])):
    np.testing.assert_array_equal(batch["rgb"][k], views.images[view, y, x])


def test_batches_depend_only_on_seed_and_step():
  views = demo_views()
  a = batching.RayBatcher(views, 128, seed=1)
  b = batching.RayBatcher(views, 128, seed=1)
  np.testing.assert_array_equal(a(7)["rgb"], b(7)["rgb"])
  np.testing.assert_array_equal(a(7)["rays"].directions, b(7)["rays"].directions)
  assert not np.array_equal(a(7)["rays"].directions, a(8)["rays"].directions)
  other_stream = batching.RayBatcher(views, 128, seed=1, stream=1)
  assert not np.array_equal(a(7)["rays"].directions, other_stream(7)["rays"].directions)


def test_single_image_mode_and_precrop():
  views = demo_views()
  single = batching.RayBatcher(views, 256, mode="single_image", precrop_steps=10, precrop_fraction=0.5)
  located = locate(views, single(3)["rays"])
  assert len({v for v, _, _ in located}) == 1
  xs, ys = np.array([x for _, x, _ in located]), np.array([y for _, _, y in located])
  assert xs.min() >= 25 and xs.max() < 75 and ys.min() >= 25 and ys.max() < 75
  after = locate(views, single(10)["rays"])
  assert max(x for _, x, _ in after) >= 75 or min(x for _, x, _ in after) < 25


def test_a_process_holds_its_share_of_the_photos_and_draws_only_from_them():
  every = demo_views()
  shares = [blender.load_split(jaxnerf.DEMO_SCENE, "test", share=(p, 3)) for p in range(3)]
  assert [list(share.held) for share in shares] == [[0, 3, 6], [1, 4, 7], [2, 5]]
  for share in shares:
    np.testing.assert_array_equal(share.images, every.images[share.held])
    np.testing.assert_array_equal(share.cam_to_world, every.cam_to_world)  # every pose, for the corrections
    assert share.names == every.names
    batch = batching.RayBatcher(share, 256, seed=1, stream=7)(5)
    assert set(batch["view"].tolist()) == set(share.held.tolist())
    for k, (view, x, y) in enumerate(locate(every, batch["rays"])):
      assert view == batch["view"][k]
      np.testing.assert_array_equal(batch["rgb"][k], every.images[view, y, x])
  # Without a share, the draws are those of every photo, as before shares existed.
  whole = batching.RayBatcher(every, 64, seed=1)(5)
  np.testing.assert_array_equal(whole["view"], np.random.default_rng([1, 0, 5]).integers(0, len(every), 64))
