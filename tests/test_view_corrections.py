"""Learned corrections of the training views: the rotation and ray maths against closed forms, and training that
recovers a known pose perturbation and a known exposure change with the scene held fixed."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf import config as config_lib
from jaxnerf.core import rays as rays_lib
from jaxnerf.data import batching
from jaxnerf.data import scene as scene_lib
from jaxnerf.data import views as views_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import sampling
from jaxnerf.nerf import view_corrections as vc
from jaxnerf.run import pose_alignment
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import train as train_lib


def test_rotation_matrix_is_rodrigues(rng):
  for axis_angle in [rng.normal(size=3), 1e-5 * rng.normal(size=3), np.zeros(3), np.array([np.pi, 0.0, 0.0])]:
    theta = np.linalg.norm(axis_angle)
    k = np.array([[0, -axis_angle[2], axis_angle[1]], [axis_angle[2], 0, -axis_angle[0]],
                  [-axis_angle[1], axis_angle[0], 0]]) / max(theta, 1e-300)
    expected = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k
    got = np.asarray(vc.rotation_matrix(jnp.asarray(axis_angle, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, expected, atol=2e-6)
  grad = jax.grad(lambda w: jnp.sum(vc.rotation_matrix(w) * jnp.arange(9.0).reshape(3, 3)))(jnp.zeros(3))
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_rays_turn_about_the_camera_centre_and_colours_leave_the_background(rng):
  rotation, translation = 0.1 * rng.normal(size=(2, 3)), 0.2 * rng.normal(size=(2, 3))
  corrections = vc.ViewCorrections(jnp.asarray(rotation, jnp.float32), jnp.asarray(translation, jnp.float32),
                                   jnp.zeros((2, 3, 3)), jnp.zeros((2, 3)))
  origins, directions = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  rays = rays_lib.Rays(*(jnp.asarray(a, jnp.float32) for a in (origins, directions,
                                                               directions / np.linalg.norm(directions, axis=-1,
                                                                                           keepdims=True))))
  view = np.array([0, 1, 1, 0, 1])
  out = vc.correct_rays(rays, corrections, jnp.asarray(view))
  matrices = np.asarray(vc.rotation_matrix(jnp.asarray(rotation, jnp.float32)))[view]
  np.testing.assert_allclose(out.origins, origins + translation[view], atol=1e-6)
  np.testing.assert_allclose(out.directions, np.einsum("nij,nj->ni", matrices, directions), atol=1e-5)
  # A point on a ray, seen from the moved camera, is the camera's view of the turned scene.
  colors = vc.ViewCorrections(*(jnp.zeros_like(a) for a in corrections[:2]), jnp.full((2, 3, 3), 0.1),
                              jnp.full((2, 3), 0.05))
  background = jnp.asarray([0.2, 0.4, 0.9])
  acc = jnp.asarray([0.0, 1.0, 0.5, 0.0, 1.0])
  light = jnp.asarray(rng.random((5, 3)), jnp.float32) * acc[:, None]
  rgb = light + (1 - acc[:, None]) * background
  corrected = np.asarray(vc.correct_color(rgb, acc, background, colors, jnp.asarray(view)))
  expected = (np.asarray(light) @ (np.eye(3) + 0.1).T + 0.05 * np.asarray(acc)[:, None] +
              (1 - np.asarray(acc)[:, None]) * np.asarray(background))
  np.testing.assert_allclose(corrected, expected, atol=1e-6)


def test_anchored_corrections_have_no_mean(rng):
  corrections = vc.ViewCorrections(*(jnp.asarray(rng.normal(size=s), jnp.float32)
                                     for s in ((4, 3), (4, 3), (4, 3, 3), (4, 3))))
  for a in vc.anchored(corrections):
    np.testing.assert_allclose(np.mean(np.asarray(a), axis=0), 0.0, atol=1e-6)


class PaintedBall(nn.Module):
  """A ball with a soft edge whose colour varies smoothly over space: a fixed scene (its one parameter is unused)
  that gives a pose a gradient through both its silhouette and its colours."""
  density_activation = staticmethod(lambda raw: raw)
  empty_outside_box = False

  @nn.compact
  def __call__(self, points, viewdirs, appearance=None):
    unused = self.param("unused", nn.initializers.zeros_init(), (1,))
    radius = jnp.linalg.norm(points, axis=-1)
    density = 30.0 * jax.nn.sigmoid((0.8 - radius) / 0.03) + 0.0 * unused[0]
    rgb = 0.5 + 0.4 * jnp.sin(jnp.stack([3.0 * points[..., 0] + 1.0, 4.0 * points[..., 1], 5.0 * points[..., 2]], -1))
    return rgb, density


def looking_at_origin(position):
  back = position / np.linalg.norm(position)
  right = np.cross([0.0, 0.0, 1.0], back)
  right /= np.linalg.norm(right)
  return np.stack([right, np.cross(back, right), back, position], axis=1)


def scene_and_photos(num_views=6, size=16, angles=None):
  """The PaintedBall model, camera poses around it (at `angles`, evenly spaced by default) and their renders (the
  photos of the exact poses)."""
  model = model_lib.Renderer(fields=(PaintedBall(),), samplers=(sampling.Stratified(32),), level_fields=(0,))
  angles = np.linspace(0, 2 * np.pi, num_views, endpoint=False) if angles is None else angles
  poses = np.stack([looking_at_origin(np.array([3.0 * np.cos(a), 3.0 * np.sin(a), 0.8 * np.sin(3 * a)]))
                    for a in angles]).astype(np.float32)
  empty = views_lib.Views(np.zeros((num_views, size, size, 3), np.float32), poses, 20.0, 1.5, 4.5,
                          [f"v{i}" for i in range(num_views)])
  scene = scene_lib.Scene(1.5, 4.5, (-1.0,) * 3 + (1.0,) * 3, train_frames=tuple(empty.names))
  params = state_lib.init_params(model, jax.random.key(0))
  render_chunk = rendering.make_render_chunk(model, scene)
  renders = [rendering.render_rays(render_chunk, {"params": params}, empty.image_rays(i), 4096)
             for i in range(num_views)]
  return model, scene, poses, np.stack([r["rgb"] for r in renders]), np.stack([r["acc"] for r in renders])


def fit_corrections(model, scene, views, refine_poses, appearance, steps):
  config = config_lib.base_config()
  config.train.lr_init = config.train.lr_final = 1e-12  # the scene stays as it is
  config.train.max_steps, config.train.batch_size = steps, 512
  config.views.refine_poses, config.views.color_map = refine_poses, appearance
  config.views.pose_lr_init, config.views.pose_lr_final = 1e-2, 1e-3
  config.views.pose_delay_steps = 0
  config.views.color_map_lr_init, config.views.color_map_lr_final = 1e-2, 1e-3
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer, len(views))
  step_fn = train_lib.make_train_step(model, optimizer, config, scene)
  batcher = batching.RayBatcher(views, config.train.batch_size)
  for step in range(steps):
    batch = jax.tree.map(jnp.asarray, batcher(step))
    state, metrics = step_fn(state, batch, jax.random.key(step))
  return state, metrics


@pytest.mark.parametrize("delay", [0, 100])
def test_pose_rate_eases_in_then_decays_log_linearly(delay):
  config = config_lib.base_config()
  config.train.max_steps = 1000
  config.views.pose_lr_init, config.views.pose_lr_final = 1e-3, 1e-5
  config.views.color_map_lr_init, config.views.color_map_lr_final = 2e-3, 2e-5
  config.views.pose_delay_steps = delay
  optimizer = state_lib.make_views_optimizer(config)
  corrections = vc.zeros(2)
  gradient = jax.tree.map(jnp.ones_like, corrections)  # constant: each Adam step moves by its rate
  opt_state = optimizer.init(corrections)
  update = jax.jit(optimizer.update)
  moves = {"pose": [], "colour": []}
  for _ in range(160):
    updates, opt_state = update(gradient, opt_state, corrections)
    moves["pose"].append(-float(updates.rotation[0, 0]))
    moves["colour"].append(-float(updates.color_offset[0, 0]))
  steps = np.arange(160)
  decayed = lambda init: init * 0.01 ** (steps / 1000)
  ramp = np.sin(0.5 * np.pi * np.clip(steps / delay, 0, 1)) if delay else 1.0
  np.testing.assert_allclose(moves["pose"], decayed(1e-3) * ramp, rtol=1e-4, atol=1e-9)
  np.testing.assert_allclose(moves["colour"], decayed(2e-3), rtol=1e-4)


def test_refinement_recovers_a_known_pose_perturbation(rng):
  model, scene, poses, photos, _ = scene_and_photos()
  # Each camera turned by 2-4 degrees about its centre and moved by 2-4% of its distance; no common drift
  # (the corrections are anchored to the given cameras as a whole).
  axes = rng.normal(size=(6, 3))
  axes /= np.linalg.norm(axes, axis=-1, keepdims=True)
  turn = axes * np.radians(rng.uniform(2, 4, size=(6, 1)))
  shift = rng.normal(size=(6, 3))
  shift *= 3.0 * rng.uniform(0.02, 0.04, size=(6, 1)) / np.linalg.norm(shift, axis=-1, keepdims=True)
  turn, shift = turn - turn.mean(0), shift - shift.mean(0)
  perturbation = vc.ViewCorrections(jnp.asarray(turn, jnp.float32), jnp.asarray(shift, jnp.float32),
                                    jnp.zeros((6, 3, 3)), jnp.zeros((6, 3)))
  perturbed = np.asarray(vc.corrected_poses(jnp.asarray(poses), perturbation))
  views = views_lib.Views(photos, perturbed, 20.0, 1.5, 4.5, list(scene.train_frames))
  state, metrics = fit_corrections(model, scene, views, True, False, steps=700)
  refined = np.asarray(vc.corrected_poses(jnp.asarray(perturbed), state.views))
  position_error = np.linalg.norm(refined[:, :, 3] - poses[:, :, 3], axis=-1)
  cosines = (np.einsum("nij,nij->n", refined[:, :, :3], poses[:, :, :3]) - 1) / 2
  angle_error = np.degrees(np.arccos(np.clip(cosines, -1, 1)))
  before = np.linalg.norm(shift, axis=-1)
  assert np.all(position_error < 0.15 * before), (position_error, before)
  assert np.all(angle_error < 0.25), angle_error  # from 1-3 degrees once anchored
  assert float(metrics["psnr"]) > 35


def test_colour_corrections_absorb_a_known_exposure_change(rng):
  model, scene, poses, photos, acc = scene_and_photos()
  gains = rng.uniform(0.7, 1.3, size=(6, 3))
  gains = gains / gains.mean(0)  # the average photo keeps the scene's colours
  # The camera's gain scales the light of the ball, not the white background composited behind it.
  background = (1.0 - acc)[..., None]
  light = photos - background
  gained = light * gains[:, None, None, :] + background
  views = views_lib.Views(gained, poses, 20.0, 1.5, 4.5, list(scene.train_frames))
  state, metrics = fit_corrections(model, scene, views, False, True, steps=300)
  # Each view's colour map takes the scene's colours (the photos of gain 1) to that view's photo. (The map is not
  # unique: the ball shows too few colours to tell a gain from a mix of channels and an offset.)
  matrices = np.eye(3) + np.asarray(state.views.color_matrix)
  mapped = (np.einsum("vij,vhwj->vhwi", matrices, light) +
            acc[..., None] * np.asarray(state.views.color_offset)[:, None, None] + background)
  assert np.max(np.abs(mapped - gained)) < 0.03
  assert float(metrics["psnr"]) > 35
  # Without the corrections, the same fixed scene cannot explain the photos.
  _, plain = fit_corrections(model, scene, views, False, False, steps=2)
  assert float(plain["psnr"]) < 30


def appearance_config(field, embedding_dim):
  """A small field of type `field` at one level of 32 samples, with appearance codes of `embedding_dim` values."""
  config = config_lib.fast_config()
  config.model.sampler, config.model.field = "hierarchical", field
  config.model.hierarchical.num_coarse_samples, config.model.hierarchical.num_fine_samples = 32, 0
  config.model.hash.num_levels, config.model.hash.log2_table_size, config.model.hash.max_resolution = 6, 12, 64
  config.model.hash.color_width = config.model.hash.density_width = 32
  config.model.mlp.depth, config.model.mlp.width, config.model.mlp.view_width = 3, 64, 32
  config.occupancy.skip_empty = config.occupancy.skip_in_training = False
  config.train.random_background, config.train.lr_delay_steps = False, 0
  config.views.embedding_dim = embedding_dim
  return config


@pytest.mark.parametrize("field", ["mlp", "hash", "planes"])
def test_appearance_codes_add_one_term_per_ray_to_the_colour_branch(field, rng):
  """A ray's colour depends on its view's code; the code only adds to the colour branch's per-ray input (zero codes
  render as no codes, density never changes), and views without a code get the mean code."""
  config = appearance_config(field, 4)
  scene = scene_lib.Scene(2.0, 6.0, (-1.5,) * 3 + (1.5,) * 3, train_frames=("a", "b", "c"))
  model = model_lib.build_model(config, scene)
  params = state_lib.init_params(model, jax.random.key(0))
  codes = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  params = {**params, "appearance": {"table": codes}}
  origins = jnp.asarray(np.tile([[0.0, 0.0, 4.0]], (5, 1)), jnp.float32)
  directions = jnp.asarray(rng.normal(scale=0.1, size=(5, 3)) + [0.0, 0.0, -1.0], jnp.float32)
  rays = rays_lib.Rays(origins, directions, directions / jnp.linalg.norm(directions, axis=-1, keepdims=True))
  render = lambda p, view: model.apply({"params": p}, rays, 2.0, 6.0, jax.random.key(1), False, view=view)[-1].out
  view = jnp.asarray([0, 1, 2, 0, 1])
  out = render(params, view)
  other = render(params, jnp.asarray([1, 2, 0, 1, 2]))
  assert np.max(np.abs(np.asarray(out.rgb) - np.asarray(other.rgb))) > 1e-3
  np.testing.assert_array_equal(out.weights, other.weights)
  # The mean code is what a view without one sees.
  mean = {**params, "appearance": {"table": jnp.broadcast_to(codes.mean(0), (3, 4))}}
  np.testing.assert_allclose(render(params, None).rgb, render(mean, view).rgb, atol=1e-6)
  # Zero codes render as the same field without codes (its other parameters).
  plain_config = appearance_config(field, 0)
  plain = model_lib.build_model(plain_config, scene)
  zero = {**params, "appearance": {"table": jnp.zeros((3, 4))}}
  without = plain.apply({"params": {k: v for k, v in params.items() if k != "appearance"}}, rays, 2.0, 6.0,
                        jax.random.key(1), False)[-1].out
  np.testing.assert_allclose(render(zero, view).rgb, without.rgb, atol=1e-6)


def test_appearance_codes_absorb_a_known_gain(rng):
  """A hash field trained on photos of the ball in pairs taken from nearly the same place, under exposures 0.6-0.7
  against 1.3-1.4. With codes, each photo's code renders its exposure and the mean code the average exposure;
  without, the field explains the exposures by view-dependent colour and renders none of them right."""
  angles = np.repeat(np.linspace(0, 2 * np.pi, 3, endpoint=False), 2) + np.tile([0.0, np.radians(2.0)], 3)
  _, scene, poses, photos, acc = scene_and_photos(num_views=6, size=16, angles=angles)
  gains = np.array([0.6, 1.4, 1.3, 0.7, 0.65, 1.35])[:, None] * rng.uniform(0.95, 1.05, size=(6, 3))
  gains /= gains.mean(0)
  background = (1.0 - acc)[..., None]
  gained = (photos - background) * gains[:, None, None, :] + background
  views = views_lib.Views(gained, poses, 20.0, 1.5, 4.5, list(scene.train_frames))

  def train(embedding_dim, steps=400):
    """The mean-code renders of the training views [6, 16, 16, 3] and, with codes, the renders with each view's
    own code."""
    config = appearance_config("hash", embedding_dim)
    config.train.max_steps, config.train.batch_size = steps, 512
    model = model_lib.build_model(config, scene)
    optimizer = state_lib.make_optimizer(config.train)
    state = state_lib.create_train_state(config, model, optimizer)
    step_fn = train_lib.make_train_step(model, optimizer, config, scene)
    batcher = batching.RayBatcher(views, config.train.batch_size)
    for step in range(steps):
      state, _ = step_fn(state, jax.tree.map(jnp.asarray, batcher(step)), jax.random.key(step))
    render = lambda i, view: np.asarray(model.apply({"params": state.params}, views.image_rays(i), scene.near,
                                                    scene.far, jax.random.key(0), False, view=view)[-1].out.rgb)
    mean_code = np.stack([render(i, None) for i in range(6)])
    own_code = np.stack([render(i, jnp.full((16, 16), i)) for i in range(6)]) if embedding_dim else None
    return mean_code, own_code

  psnr = lambda a, b: -10 * np.log10(np.mean((a - b) ** 2))
  mean_code, own_code = train(8)
  plain, _ = train(0)
  # The average exposure, which no photo shows, from the mean code.
  assert psnr(mean_code, photos) > psnr(plain, photos) + 5, (psnr(mean_code, photos), psnr(plain, photos))
  assert psnr(mean_code, photos) > 24, psnr(mean_code, photos)
  # Each code brightens or darkens the ball by its photo's gain.
  ball = acc > 0.9
  ratios = np.array([np.mean(own_code[i][ball[i]]) / np.mean(mean_code[i][ball[i]]) for i in range(6)])
  np.testing.assert_allclose(ratios, gains.mean(1), rtol=0.15)
  assert psnr(own_code, gained) > 25, psnr(own_code, gained)


def test_pose_alignment_fits_a_held_out_camera_to_its_photo(rng):
  model, scene, poses, photos, _ = scene_and_photos(num_views=2, size=24)
  turn, shift = np.radians(1.0) * np.array([0.6, -0.8, 0.0]), np.array([0.02, 0.05, -0.03])
  given = np.asarray(vc.corrected_poses(jnp.asarray(poses[:1]), vc.ViewCorrections(
      jnp.asarray([turn], jnp.float32), jnp.asarray([shift], jnp.float32), jnp.zeros((1, 3, 3)),
      jnp.zeros((1, 3)))))
  views = views_lib.Views(photos[:1], given, 20.0, 1.5, 4.5, ["v0"])
  params = state_lib.init_params(model, jax.random.key(0))
  fit = pose_alignment.make_fit_step(model, scene, pose_alignment.fit_schedule(300, 1e-2, 1e-4))
  rays, degrees, distance = pose_alignment.aligned_rays(fit, params, views.image_rays(0), photos[0], 300, 256)
  exact = views_lib.Views(photos[:1], poses[:1], 20.0, 1.5, 4.5, ["v0"]).image_rays(0)
  # The fit undoes the perturbation where the photo can tell: the rays meet the exact camera's at the ball (a
  # small turn and a sideways move look alike from afar, so the pose itself is not pinned down as closely).
  at_ball = lambda r: r.origins + 3.0 * r.directions / np.linalg.norm(r.directions, axis=-1, keepdims=True)
  before = np.max(np.abs(at_ball(views.image_rays(0)) - at_ball(exact)))
  after = np.max(np.abs(at_ball(rays) - at_ball(exact)))
  assert after < 0.3 * before, (after, before)
  render = lambda r: rendering.render_rays(rendering.make_render_chunk(model, scene), {"params": params}, r, 4096)
  error = lambda r: float(np.sqrt(np.mean((render(r)["rgb"] - photos[0]) ** 2)))
  assert error(rays) < 0.2 * error(views.image_rays(0)), (error(rays), error(views.image_rays(0)))

