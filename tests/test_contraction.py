"""Unbounded scenes: mip-NeRF 360's scene contraction, sample spacing in disparity, the capture config."""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from jaxnerf.core import compositing
from jaxnerf.core import cones
from jaxnerf import config as config_lib
from jaxnerf.core import contraction
from jaxnerf.run import evaluate as eval_lib
from jaxnerf.nerf import hash_encoding
from jaxnerf.nerf import losses
from jaxnerf.nerf import model
from jaxnerf.core import rays as rays_lib
from jaxnerf.nerf import sampling
from jaxnerf.run import train as train_lib
from jaxnerf.run import video as video_lib
from jaxnerf.data import loaders
from jaxnerf.core import poses as poses_lib
from jaxnerf.data import transforms
from jaxnerf.errors import ConfigError
from jaxnerf.nerf import mlp_field
from jaxnerf.nerf import hash_field
from jaxnerf.nerf import layers
from jaxnerf.run import state as state_lib
from jaxnerf.data import scene as scene_lib
from test_model import small_config
from test_model import unit
from test_transforms import demo_scene
from test_transforms import write_capture

sys.path.insert(0, os.path.join(REPO, "configs"))
import capture  # noqa: E402


def reference_contract(x):
  """float64 numpy contraction of points [..., 3], written from the definition."""
  x = np.asarray(x, np.float64)
  r = np.linalg.norm(x, axis=-1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(r <= 1.0, x, (2.0 - 1.0 / r) * x / r)


def points_at_radii(rng, radii):
  """[len(radii), 3] float64 points at the given distances from the origin, in random directions."""
  directions = rng.normal(size=(len(radii), 3))
  return directions / np.linalg.norm(directions, axis=-1, keepdims=True) * np.asarray(radii)[:, None]


def test_identity_inside_the_unit_ball(rng):
  x = points_at_radii(rng, rng.uniform(0.0, 1.0, 1000) ** (1 / 3)).astype(np.float32)
  np.testing.assert_array_equal(contraction.contract(jnp.asarray(x)), x)
  np.testing.assert_array_equal(contraction.contract(jnp.zeros((1, 3))), np.zeros((1, 3)))


def test_matches_float64_reference_bounded_by_two_and_monotone(rng):
  radii = np.concatenate([np.geomspace(1e-3, 1e30, 400), [1.0 - 1e-6, 1.0, 1.0 + 1e-6, 1e6]])
  x = points_at_radii(rng, radii)
  y = np.asarray(contraction.contract(jnp.asarray(x, jnp.float32)), np.float64)
  np.testing.assert_allclose(y, reference_contract(x.astype(np.float32)), rtol=1e-6, atol=1e-6)
  norms = np.linalg.norm(y, axis=-1)
  assert np.all(np.isfinite(y)) and np.all(norms <= 2.0 * (1 + 2e-7))  # 2 - 1/r rounds to 2 in float32
  # Along one direction the contracted radius grows with the radius (strictly, while float32 resolves it).
  direction = np.array([[0.48, -0.6, 0.64]])
  ts = np.geomspace(1e-2, 1e3, 2000)
  along = np.linalg.norm(np.asarray(contraction.contract(jnp.asarray(direction * ts[:, None], jnp.float32))), axis=-1)
  assert np.all(np.diff(along) > 0)
  np.testing.assert_allclose(along, np.where(ts <= 1, ts, 2 - 1 / ts), rtol=1e-6)


def test_continuous_across_radius_one(rng):
  directions = points_at_radii(rng, np.ones(200))
  for eps in (1e-2, 1e-3, 1e-4):
    inside = np.asarray(contraction.contract(jnp.asarray(directions * (1 - eps), jnp.float32)))
    outside = np.asarray(contraction.contract(jnp.asarray(directions * (1 + eps), jnp.float32)))
    # Slope 1 on both sides: the gap is 2 eps (up to eps^2 and float32 rounding), not a jump.
    gap = np.linalg.norm(outside - inside, axis=-1)
    np.testing.assert_allclose(gap, 2 * eps, rtol=0.02, atol=1e-6)


def test_inverse_and_unit_coordinates_round_trip(rng):
  x = points_at_radii(rng, np.geomspace(1e-2, 1e3, 300)).astype(np.float32)
  back = np.asarray(contraction.inverse_contract(contraction.contract(jnp.asarray(x))))
  np.testing.assert_allclose(back, x, rtol=2e-3)  # float32 resolution of the radius 2 - 1/r near 2
  # The unit cube's corners lie beyond the image of infinity (radius 2): no finite point maps there.
  beyond = points_at_radii(rng, np.linspace(2.0, 2.0 * np.sqrt(3.0), 50)).astype(np.float32)
  assert not np.any(np.all(np.isfinite(contraction.inverse_contract(jnp.asarray(beyond))), axis=-1))
  box = (-1.0, -2.0, -3.0, 1.0, 2.0, 5.0)
  for contract in (False, True):
    coords, inside = contraction.unit_coordinates(jnp.asarray(x), box, contract)
    np.testing.assert_allclose(contraction.points_at_unit_coordinates(coords, box, contract), x, rtol=2e-3, atol=1e-6)
    if contract:
      assert np.all(inside) and np.all((coords > 0) & (coords < 1))
      np.testing.assert_allclose(coords, (reference_contract(x) + 2) / 4, atol=1e-6)
    else:
      lo, hi = np.array(box[:3]), np.array(box[3:])
      np.testing.assert_array_equal(inside, np.all((x >= lo) & (x <= hi), axis=-1))


def reference_jacobian(x, h=1e-6):
  """Central differences of the float64 reference, [3, 3] at one point (columns: derivatives along each axis)."""
  return np.stack([(reference_contract(x + h * e) - reference_contract(x - h * e)) / (2 * h) for e in np.eye(3)],
                  axis=-1)


def test_jacobian_against_finite_differences(rng):
  x = points_at_radii(rng, [0.3, 0.9, 1.2, 2.0, 7.5, 40.0, 1e3])
  jacobians = np.asarray(contraction.contract_jacobian(jnp.asarray(x, jnp.float32)))
  for point, jacobian in zip(x, jacobians):
    np.testing.assert_allclose(jacobian, reference_jacobian(point), atol=1e-5 * max(1.0, 1 / np.sum(point ** 2)))
  # And against autodiff of contract itself, which stays finite at the origin and far away.
  points = jnp.asarray(np.concatenate([x, np.zeros((1, 3)), [[3e20, -1e20, 2e20]]]), jnp.float32)
  autodiff = jax.vmap(jax.jacfwd(contraction.contract))(points)
  assert np.all(np.isfinite(autodiff))
  np.testing.assert_allclose(contraction.contract_jacobian(points), autodiff, atol=1e-6)
  gradient = jax.grad(lambda p: jnp.sum(contraction.contract(p) ** 2))(points)
  assert np.all(np.isfinite(gradient))


def test_gaussians_pushed_through_the_jacobian(rng):
  means = points_at_radii(rng, [0.5, 3.0, 20.0])
  a = rng.normal(size=(3, 3, 3))
  covs = a @ np.swapaxes(a, -1, -2) * 1e-2
  new_means, new_covs = contraction.contract_gaussians(jnp.asarray(means, jnp.float32), jnp.asarray(covs, jnp.float32))
  np.testing.assert_allclose(new_means, reference_contract(means), rtol=1e-6)
  for mean, cov, new_cov in zip(means, covs, np.asarray(new_covs)):
    jacobian = reference_jacobian(mean)
    np.testing.assert_allclose(new_cov, jacobian @ cov @ jacobian.T, rtol=1e-4, atol=1e-9)


SPACING_REFERENCES = {  # g and its inverse in float64, from the definitions
    "linear": (lambda t: t, lambda u: u),
    "disparity": (lambda t: 1 / t, lambda u: 1 / u),
    "linear_then_disparity": (lambda t: np.where(t < 1, t, 2 - 1 / t), lambda u: np.where(u < 1, u, 1 / (2 - u))),
}


@pytest.mark.parametrize("spacing", sampling.SPACINGS)
@pytest.mark.parametrize("near, far", [(0.05, 1e3), (2.0, 6.0), (0.5, 1.5)])
def test_spacing_round_trip_and_float64_reference(spacing, near, far):
  g, g_inv = SPACING_REFERENCES[spacing]
  s = np.linspace(0.0, 1.0, 257)
  expected_t = g_inv(g(near) + s * (g(far) - g(near)))
  t = np.asarray(sampling.s_to_t(jnp.asarray(s, jnp.float32), near, far, spacing))
  np.testing.assert_allclose(t, expected_t, rtol=2e-4)
  np.testing.assert_allclose(t[[0, -1]], [near, far], rtol=2e-4)
  np.testing.assert_allclose(sampling.t_to_s(jnp.asarray(expected_t, jnp.float32), near, far, spacing), s,
                             atol=1e-5)
  np.testing.assert_allclose(sampling.t_to_s(jnp.asarray(t), near, far, spacing), s, atol=1e-5)


def test_stratified_spacing_and_lindisp_agree():
  near, far = 0.05, 1e3
  lindisp = sampling.stratified_samples(None, (2,), 9, near, far, True, randomized=False)
  disparity = sampling.stratified_samples(None, (2,), 9, near, far, False, randomized=False, spacing="disparity")
  np.testing.assert_array_equal(lindisp, disparity)
  t = np.asarray(sampling.stratified_samples(None, (2,), 9, near, far, False, False, "linear_then_disparity"))
  g, g_inv = SPACING_REFERENCES["linear_then_disparity"]
  np.testing.assert_allclose(t[0], g_inv(np.linspace(g(near), g(far), 9)), rtol=2e-4)
  # Jittered samples stay within their strata.
  jittered = np.asarray(sampling.stratified_samples(jax.random.key(0), (500,), 9, near, far, False, True,
                                                    "linear_then_disparity"))
  mids = 0.5 * (t[0, 1:] + t[0, :-1])
  lower, upper = np.concatenate([[near], mids]), np.concatenate([mids, [far]])
  assert np.all((jittered >= lower * (1 - 1e-6)) & (jittered <= upper * (1 + 1e-6)))


def test_interval_samplers_resample_in_s():
  near, far, spacing = 0.05, 1e3, "linear_then_disparity"
  first = sampling.Intervals(8, spacing)(None, (3,), near, far, None, randomized=False)
  # The first level's intervals are even in s: edges at 0, 1/16 + k/8 ..., 1 (stepfun's outer edges mirror).
  expected_s = np.concatenate([[0.0], (np.arange(1, 8)) / 8, [1.0]])
  np.testing.assert_allclose(first.s_edges[0], expected_s, atol=1e-6)
  np.testing.assert_allclose(sampling.t_to_s(first.edges, near, far, spacing), first.s_edges, atol=1e-5)
  np.testing.assert_allclose(first.t, 0.5 * (first.edges[..., 1:] + first.edges[..., :-1]))
  # All weight on one interval: the next level's intervals lie inside it, in s.
  weights = jnp.zeros((3, 8)).at[:, 5].set(1.0)
  # mip-NeRF's blur spreads the weight over the neighbouring intervals.
  for sampler, (lo, hi) in ((sampling.Intervals(4, spacing), (5 / 8, 6 / 8)),
                            (sampling.BlurredIntervals(4, 0.0, spacing), (4 / 8, 7 / 8))):
    second = sampler(None, (3,), near, far, (first, weights), randomized=False)
    mids = 0.5 * (np.asarray(second.s_edges)[:, 1:] + np.asarray(second.s_edges)[:, :-1])
    assert np.all((mids >= lo - 1e-3) & (mids <= hi + 1e-3))
    np.testing.assert_allclose(sampling.t_to_s(second.edges, near, far, spacing), second.s_edges, atol=1e-4)
  assert sampling.Intervals(8)(None, (3,), near, far, None, randomized=False).s_edges is None


def test_distortion_loss_in_spacing_coordinates(rng):
  near, far, spacing = 0.05, 1e3, "linear_then_disparity"
  samples = sampling.Intervals(6, spacing)(jax.random.key(0), (2,), near, far, None, randomized=True)
  weights = rng.uniform(size=(2, 6)) / 6
  out = compositing.Composite(None, None, None, None, jnp.asarray(weights, jnp.float32))
  loss = losses.distortion_loss([model.Level(samples, out)], near, far)
  s = np.asarray(samples.s_edges, np.float64)
  mids, widths = 0.5 * (s[:, 1:] + s[:, :-1]), s[:, 1:] - s[:, :-1]
  brute = [np.sum(w[:, None] * w[None, :] * np.abs(m[:, None] - m[None, :])) + np.sum(w ** 2 * d) / 3
           for w, m, d in zip(weights, mids, widths)]
  np.testing.assert_allclose(loss, np.mean(brute), rtol=1e-5)


@pytest.mark.parametrize("field_name", ["hash", "proposal"])
def test_hash_fields_with_contraction_cover_all_of_space(rng, field_name):
  config = small_config(**{"model.contraction": True})
  field = hash_field.build(config, config.data.scene_box) if field_name == "hash" else hash_field.build_proposal(config, config.data.scene_box)
  points = jnp.asarray(points_at_radii(rng, [0.5, 3.0, 1e3, 1e6, 1e6, 1e6]).reshape(2, 3, 3), jnp.float32)
  viewdirs = unit(rng, (2, 3))
  params = field.init(jax.random.key(0), points, viewdirs)
  rgb, raw_density = field.apply(params, points, viewdirs)
  assert np.all(np.isfinite(raw_density)) and np.all(np.asarray(raw_density) != layers.EMPTY_RAW_DENSITY)
  assert rgb is None or np.all(np.isfinite(rgb))
  coords, inside = contraction.unit_coordinates(points, config.data.scene_box, True)
  assert np.all(inside)
  resolutions = field.encoding.resolutions
  cells, fractions = hash_encoding.grid_cells(coords, resolutions)
  assert np.all(np.asarray(cells) <= resolutions[:, None] - 1) and np.all((fractions >= 0) & (fractions <= 1))
  rows = hash_encoding.cell_rows(cells, resolutions, 2 ** field.encoding.log2_table_size)
  assert np.all((np.asarray(rows) >= 0) & (np.asarray(rows) < 2 ** field.encoding.log2_table_size))
  # Without contraction the same far points are outside the box: empty.
  plain_config = small_config()
  plain = (hash_field.build if field_name == "hash" else hash_field.build_proposal)(plain_config, plain_config.data.scene_box)
  _, plain_density = plain.apply(params, points, viewdirs)
  assert np.all(np.asarray(plain_density)[1] == layers.EMPTY_RAW_DENSITY)


def test_mlp_sees_contracted_points_and_gaussians(rng):
  config = small_config(**{"model.contraction": True})
  contracted, plain = mlp_field.build(config, config.data.scene_box), mlp_field.build(small_config(), (-1.5,) * 3 + (1.5,) * 3)
  points = jnp.asarray(points_at_radii(rng, [0.5, 3.0, 40.0, 1e6]).reshape(2, 2, 3), jnp.float32)
  viewdirs = unit(rng, (2, 3))
  params = plain.init(jax.random.key(0), points, viewdirs)
  for a, b in zip(contracted.apply(params, points, viewdirs),
                  plain.apply(params, contraction.contract(points), viewdirs)):
    np.testing.assert_array_equal(a, b)
  # Frustums: contracted means, the diagonal of J C J^T.
  gaussians = cones.frustum_gaussians(jnp.zeros((2, 3)), points[:, 0] / 10, jnp.full((2, 1), 0.01),
                                      jnp.asarray([[1.0, 2.0, 30.0], [0.5, 5.0, 9.0]]), diagonal=False)
  means, covs = contraction.contract_gaussians(*gaussians)
  expected = plain.apply(params, cones.Gaussians(means, jnp.diagonal(covs, axis1=-2, axis2=-1)), viewdirs)
  for a, b in zip(contracted.apply(params, gaussians, viewdirs), expected):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  diagonal = cones.frustum_gaussians(jnp.zeros((2, 3)), points[:, 0], None, jnp.ones((2, 3)) * jnp.arange(3.0) + 1)
  with pytest.raises(ValueError, match="full covariances"):
    contracted.apply(params, diagonal, viewdirs)


def test_mip_nerf_with_contraction(rng):
  """mip-NeRF's frustums through the contraction (mip-NeRF 360): inside the unit ball, where the contraction is the
  identity, renders equal plain mip-NeRF's; rays out to a far of 1000 render finite colours and gradients."""
  changes = {"model.sampler": "mip", "model.mip.num_coarse_samples": 12, "model.mip.num_fine_samples": 12,
             "model.mlp.position_max_deg": 12}
  contracted = model.build_model(small_config(**changes, **{"model.contraction": True}))
  plain = model.build_model(small_config(**changes))
  params = state_lib.init_params(plain, jax.random.key(0))
  directions = unit(rng, (16, 3))
  rays = rays_lib.Rays(jnp.zeros((16, 3)), directions, directions, jnp.full((16, 1), 0.01))
  render = lambda m, far: m.apply({"params": params}, rays, 0.05, far, jax.random.key(1), randomized=False)
  for a, b in zip(jax.tree.leaves(render(contracted, 0.95)), jax.tree.leaves(render(plain, 0.95))):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  assert np.max(np.abs(render(contracted, 3.0)[-1].out.rgb - render(plain, 3.0)[-1].out.rgb)) > 1e-4
  far = render(contracted, 1e3)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(far))
  loss = lambda p: jnp.sum(contracted.apply({"params": p}, rays, 0.05, 1e3, jax.random.key(1), randomized=True)[-1]
                           .out.rgb)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(jax.grad(loss)(params)))


@pytest.mark.parametrize("changes, message", [
    ({"model.spacing": "log"}, "config.model.spacing: expected one of"),
    ({"model.hierarchical.lindisp": True, "model.spacing": "linear_then_disparity"}, "model.hierarchical.lindisp"),
])
def test_config_errors(changes, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(small_config(**changes), 1)


def test_transforms_rejects_ndc(tmp_path):
  config = capture.get_config()
  config.data.data_dir = str(tmp_path)
  config.data.ndc = True
  with pytest.raises(ConfigError, match="config.data.ndc: expected False for data.dataset 'transforms'"):
    loaders.load_views(config, "train")


def test_long_side_picks_the_factor_and_crops(tmp_path):
  root = tmp_path / "scene"
  (root / "images").mkdir(parents=True)
  frames = []
  pixels = np.random.default_rng(0).integers(0, 256, size=(3, 30, 41, 3), dtype=np.uint8)
  for i in range(3):
    Image.fromarray(pixels[i]).save(root / "images" / f"f{i}.png")
    pose = np.eye(4)
    pose[:3, 3] = [np.cos(i), np.sin(i), 0.3 * i]
    frames.append({"file_path": f"images/f{i}.png", "transform_matrix": pose.tolist()})
  (root / "transforms.json").write_text(json.dumps({"fl_x": 40.0, "cx": 20.0, "cy": 15.5, "frames": frames}))
  views = transforms.load_split(str(root), "train", hold=100, normalize=False, near=0.1, far=2.0, long_side=10)
  # round(41 / 10) = 4: 41x30 cropped to 40x28, then 4x4 blocks.
  assert views.images.shape == (2, 7, 10, 3)
  expected = pixels[1, :28, :40].astype(np.float64).reshape(7, 4, 10, 4, 3).mean(axis=(1, 3)) / 255
  np.testing.assert_allclose(views.images[0], expected, atol=1e-5)
  np.testing.assert_allclose(views.intrinsics[0], [10.0, 10.0, 5.0, 3.875])


def test_capture_config_trains_on_the_demo_as_a_capture(tmp_path):
  """configs/capture.py, shrunk, trains 3 steps on the demo written as a transforms.json and evaluates."""
  root = str(tmp_path / "scene")
  demo_scene(root)
  config = capture.get_config()
  config.data.data_dir = root
  config.model.hash.num_levels, config.model.hash.log2_table_size, config.model.hash.max_resolution = 4, 10, 64
  config.model.proposal.num_levels, config.model.proposal.log2_table_size = 2, 8
  config.model.proposal.num_samples, config.model.proposal.num_final_samples = (8,), 8
  config.train.batch_size, config.train.max_steps, config.train.checkpoint_every = 64, 3, 3
  config.eval.stride, config.eval.lpips_net = 8, ""
  workdir = str(tmp_path / "run")
  train_lib.train_and_evaluate(config, workdir)
  eval_lib.evaluate(config, workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["model"]["contraction"] and scene_lib.load(workdir).far == 1e3  # the loader's far, in scene.json
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  assert np.isfinite(metrics["psnr"]) and metrics["step"] == 3


def test_forward_facing_capture_gets_a_spiral_video_path(tmp_path):
  """A forward-facing capture with COLMAP's point depths: the loader gives each view's depth bounds in the scene's
  scale, and render.py's automatic path is the spiral in front of the cameras; an inward-facing one orbits."""
  offsets = [(x, y) for x in (-0.3, 0.0, 0.3) for y in (-0.2, 0.2)]
  frames = []
  for i, (x, y) in enumerate(offsets):
    pose = np.eye(4)
    pose[:3, 3] = [x, y, 0.05 * i]  # all looking down -z
    frames.append({"transform_matrix": pose.tolist(), "points_depth": [2.0 + 0.1 * i, 8.0 + i]})
  root = str(tmp_path / "forward")
  write_capture(root, frames, fl_x=7.0)
  config = capture.get_config()
  config.data.data_dir = root
  config.data.transforms.hold = 100  # frame 0 is the test view
  views = loaders.load_views(config, "train")
  scale = np.cbrt(np.linalg.det(views.scene_from_world[:3, :3]))
  np.testing.assert_allclose(views.bounds, scale * np.array([f["points_depth"] for f in frames[1:]]), rtol=1e-6)
  kind, path, _ = video_lib.path_poses("auto", config, 8)
  assert kind == "spiral"
  cameras = views.cam_to_world[:, :, 3]
  spread = np.max(np.linalg.norm(cameras - cameras.mean(0), axis=-1))
  assert np.all(np.linalg.norm(path[:, :, 3] - cameras.mean(0), axis=-1) < 1.5 * spread)
  mean_view = -views.cam_to_world[:, :, 2].mean(0)
  assert np.all(-path[:, :, 2] @ (mean_view / np.linalg.norm(mean_view)) > 0.9)
  # Toed in a little towards a point 4 units ahead, as a handheld forward-facing capture (fern's axes meet in
  # front of the cameras too): still the spiral.
  for frame, (x, y) in zip(frames, offsets):
    back = np.array([x, y, 4.0]) / np.linalg.norm([x, y, 4.0])
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(back, right), back], axis=-1)
    pose[:3, 3] = [x, y, 0.0]
    frame["transform_matrix"] = pose.tolist()
  config.data.data_dir = str(tmp_path / "toed_in")
  write_capture(config.data.data_dir, frames, fl_x=7.0)
  assert poses_lib.axes_are_convergent(loaders.load_views(config, "train").cam_to_world.astype(np.float64))
  assert video_lib.path_poses("auto", config, 8)[0] == "spiral"
  # Cameras around an object, looking at it: the orbit, as before.
  inward = []
  for i in range(6):
    angle = 2 * np.pi * i / 6
    position = 3.0 * np.array([np.cos(angle), np.sin(angle), 0.3])
    back = position / np.linalg.norm(position)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(back, right), back], axis=-1)
    pose[:3, 3] = position
    inward.append({"transform_matrix": pose.tolist(), "points_depth": [2.0, 4.0]})
  config.data.data_dir = str(tmp_path / "inward")
  write_capture(config.data.data_dir, inward, fl_x=7.0)
  assert video_lib.path_poses("auto", config, 8)[0] == "orbit"
