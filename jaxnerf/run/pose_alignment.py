"""Test-time pose alignment (BARF's evaluation protocol): before a held-out view is scored, its camera's rotation
and translation are fitted to its photo with the trained field frozen.

A run that refines its training poses (config.views.refine_poses) can only pin the scene's frame to the given
cameras up to the mean of their errors (view_corrections.anchored), so even a perfect field is seen from slightly
off by a held-out camera whose given pose is exact. The fit absorbs that offset (and the held-out pose's own error,
for real captures) and nothing else: the field does not change, so what it is scored on is still novel views.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnerf.nerf import view_corrections


def fit_schedule(steps, init=1e-3, final=1e-5):
  """The fit's learning rate: log-linear from `init` to `final` over `steps`."""
  return lambda step: init * (final / init) ** jnp.clip(step / steps, 0.0, 1.0)


def make_fit_step(model, scene, learning_rate):
  """A jitted (params, corrections, opt_state, rays, target, key) -> (corrections, opt_state, loss): one Adam step
  on the pose corrections of one view (ViewCorrections of [1, ...] arrays) on rays [n, 3] of it and their photo's
  colours target [n, 3], the field `params` frozen (rendered deterministically, as eval renders)."""
  optimizer = optax.adam(learning_rate)

  @jax.jit
  def fit_step(params, corrections, opt_state, rays, target, key):
    def loss_fn(corrections):
      view = jnp.zeros(rays.origins.shape[0], jnp.int32)
      corrected = view_corrections.correct_rays(rays, corrections, view)
      rgb = model.apply({"params": params}, corrected, scene.near, scene.far, key, randomized=False)[-1].out.rgb
      return jnp.mean((rgb - target) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(corrections)
    # Only the pose is fitted; the colour corrections stay zero (held-out photos keep their colours).
    grads = grads._replace(color_matrix=jnp.zeros_like(grads.color_matrix),
                           color_offset=jnp.zeros_like(grads.color_offset))
    updates, opt_state = optimizer.update(grads, opt_state, corrections)
    return optax.apply_updates(corrections, updates), opt_state, loss

  return fit_step, optimizer


def aligned_rays(fit, params, rays, image, steps, rays_per_step, seed=0):
  """The rays of one held-out view with its pose fitted to its photo.

  Args:
    fit: (fit_step, optimizer) from make_fit_step.
    params: the trained field's parameters.
    rays: Rays of the view with [height, width, 3] numpy fields (radii [height, width, 1]).
    image: [height, width, 3] its photo, composited onto the scene's background.
    steps: Adam steps; each takes `rays_per_step` pixels drawn at random (seeded by `seed`).

  Returns:
    (Rays like `rays`, corrected; the fitted rotation in degrees and translation in scene units, as floats).
  """
  fit_step, optimizer = fit
  flat = jax.tree.map(lambda x: np.asarray(x, np.float32).reshape(-1, x.shape[-1]), rays)
  colors = np.asarray(image, np.float32).reshape(-1, 3)
  corrections = view_corrections.zeros(1)
  opt_state = optimizer.init(corrections)
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  for _ in range(steps):
    pick = rng.integers(0, colors.shape[0], min(rays_per_step, colors.shape[0]))
    corrections, opt_state, _ = fit_step(params, corrections, opt_state, jax.tree.map(lambda x: x[pick], flat),
                                         colors[pick], key)
  corrected = view_corrections.correct_rays(flat, corrections, jnp.zeros(colors.shape[0], jnp.int32))
  batch_shape = rays.origins.shape[:-1]
  shaped = jax.tree.map(lambda x: np.asarray(x).reshape(*batch_shape, x.shape[-1]), corrected)
  degrees = float(np.degrees(np.linalg.norm(corrections.rotation[0])))
  return shaped, degrees, float(np.linalg.norm(corrections.translation[0]))
