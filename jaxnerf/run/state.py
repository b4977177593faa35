"""The training state: its definition, the optimiser and its schedule, the initial state, and the state of a
trained run restored from its checkpoints (with its model and occupancy grid)."""
import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnerf import storage
from jaxnerf.core import rays as rays_lib
from jaxnerf.errors import WorkdirError
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import occupancy
from jaxnerf.nerf import view_corrections
from jaxnerf.run import checkpoints
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.runtime import sharding

# Fields of the training state that checkpoints of earlier versions lack; they restore with the template's values.
ADDED_FIELDS = ("density_grid", "views", "views_opt_state")


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # [] int32, completed steps
  params: Any
  opt_state: Any
  key: jnp.ndarray  # [2] uint32 raw key data; the key of step i is fold_in(key, i)
  nonfinite_streak: jnp.ndarray  # [] int32, steps in a row skipped for a non-finite loss or gradient
  nonfinite_total: jnp.ndarray  # [] int32, all skipped steps
  density_grid: jnp.ndarray  # [R, R, R] float32, the occupancy grid's densities (nerf/occupancy.py)
  views: Any  # view_corrections.ViewCorrections of [num_views, ...] arrays, or None when not learned
  views_opt_state: Any


def eased_in(step, steps):
  """A sine ramp from 0 at step 0 to 1 at `steps` and after (1 throughout when steps is 0)."""
  return jnp.sin(0.5 * jnp.pi * jnp.clip(step / steps, 0.0, 1.0)) if steps > 0 else 1.0


def learning_rate_schedule(train_config):
  """Log-linear decay from lr_init to lr_final over max_steps, optionally eased in over lr_delay_steps from
  lr_init * lr_delay_mult (a sine ramp)."""
  c = train_config

  def schedule(step):
    progress = jnp.clip(step / c.max_steps, 0.0, 1.0)
    lr = jnp.exp(jnp.log(c.lr_init) * (1.0 - progress) + jnp.log(c.lr_final) * progress)
    if c.lr_delay_steps > 0:
      lr = lr * (c.lr_delay_mult + (1.0 - c.lr_delay_mult) * eased_in(step, c.lr_delay_steps))
    return lr

  return schedule


def make_optimizer(train_config):
  """Adam on the schedule, after optional global-norm clipping, with optional decoupled weight decay of the MLP
  kernels (hash tables and biases are not decayed)."""
  c = train_config
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
  adam = optax.adamw(learning_rate_schedule(c), b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps,
                     weight_decay=c.weight_decay, mask=decay_mask) if c.weight_decay > 0 else optax.adam(
                         learning_rate_schedule(c), b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps)
  if c.grad_max_norm > 0:
    return optax.chain(optax.clip_by_global_norm(c.grad_max_norm), adam)
  return adam


def refined_views(views, state, stride=1):
  """Training `views` (every stride-th) with the pose corrections the state learned, if it learned any."""
  if state.views is None:
    return views
  corrections = jax.tree.map(lambda a: np.asarray(a)[::stride], state.views)
  if corrections.rotation.shape[0] != len(views) or not (np.any(corrections.rotation) or
                                                         np.any(corrections.translation)):
    return views
  poses = view_corrections.corrected_poses(jnp.asarray(views.cam_to_world), corrections)
  return dataclasses.replace(views, cam_to_world=np.asarray(poses, np.float32))


def init_params(model, key, near=2.0, far=6.0):
  """Initial parameters (they do not depend on the batch size)."""
  rays = rays_lib.Rays(*(jnp.ones((1, 3), jnp.float32),) * 3)
  return model.init(key, rays, near, far, key, randomized=False)["params"]


def corrected_views(config, scene):
  """How many training views have learned corrections (config.views): all of scene.train_frames, or none."""
  learned = config.views.refine_poses or config.views.color_map
  return len(scene.train_frames) if learned and scene.train_frames else 0


def make_views_optimizer(config):
  """Adam on the views' pose and colour corrections, each with its own log-linear schedule over the run; the
  poses' rate eased in from 0 over views.pose_delay_steps (a sine ramp), so that they move once the field has a
  first fit of the photos (CamP does this)."""
  v, steps = config.views, config.train.max_steps

  def schedule(init, final, delay=0):
    return lambda step: init * (final / init) ** jnp.clip(step / steps, 0.0, 1.0) * eased_in(step, delay)

  # "appearance" names the colour maps' part of the optimiser state in checkpoints written before the rename.
  labels = view_corrections.ViewCorrections("pose", "pose", "appearance", "appearance")
  return optax.multi_transform({"pose": optax.adam(schedule(v.pose_lr_init, v.pose_lr_final, v.pose_delay_steps)),
                                "appearance": optax.adam(schedule(v.color_map_lr_init, v.color_map_lr_final))},
                               labels)


def create_train_state(config, model, optimizer, num_views=0):
  """The initial state, replicated over sharding.data_mesh() (every process computes the same values), with
  corrections of `num_views` training views (corrected_views)."""

  @functools.partial(jax.jit, out_shardings=sharding.replicated(sharding.data_mesh()))
  def create():
    key = jax.random.key(config.train.seed)
    params = init_params(model, jax.random.fold_in(key, 0))
    zero = jnp.zeros((), jnp.int32)
    # None without corrections: checkpoints cannot hold arrays of size zero.
    views = view_corrections.zeros(num_views) if num_views else None
    return TrainState(step=zero, params=params, opt_state=optimizer.init(params),
                      key=jax.random.key_data(jax.random.fold_in(key, 1)), nonfinite_streak=zero,
                      nonfinite_total=zero, density_grid=occupancy.empty_grid(config.occupancy.resolution),
                      views=views, views_opt_state=make_views_optimizer(config).init(views) if num_views else None)

  return create()


def grid_density(model, params):
  """The finest field's density at points [n, 3] -> [n], with `params` as an argument of compiled calls."""
  return jax.tree_util.Partial(lambda params, points: model.apply({"params": params}, points,
                                                                  method=model.field_at)[1], params)


def with_occupancy_grid(model, config, scene, state):
  """`state`, with an occupancy grid over `scene` computed from its field if renders skip empty space and the grid
  was never refreshed (a checkpoint written before the grid was part of the training state)."""
  if config.occupancy.skip_empty and int(state.step) > 0 and not np.any(np.asarray(state.density_grid)):
    grid = occupancy.full_grid(grid_density(model, state.params), config.occupancy, scene.scene_box,
                               config.model.contraction, jax.random.key(0), sharding.spread_over(sharding.data_mesh()))
    return state.replace(density_grid=jax.device_put(grid, state.density_grid.sharding))
  return state


def restore_trained(config, workdir, scene, step=None):
  """The model of `config` in `scene` (workdir_lib.run_scene) and the latest training state in workdir (or the one
  saved at `step`), with an occupancy grid computed from the field if renders skip empty space and the checkpoint
  has none. Data settings that differ from those the run trained with are printed as notes.

  Raises WorkdirError if workdir holds no checkpoint, or a run or checkpoint of another model.
  """
  if not storage.isdir(storage.join(workdir, "checkpoints")):
    raise WorkdirError(f"{workdir}: no checkpoint to render (train first, with the same --workdir)")
  workdir_lib.prepare_workdir(config, workdir)
  if workdir_lib.is_lead_process():
    for field, here, there in workdir_lib.data_differences(config, workdir):
      print(f"note: config.{field} is {here!r} here, {there!r} in the run's config.json", flush=True)
  model = model_lib.build_model(config, scene)
  template = create_train_state(config, model, make_optimizer(config.train), corrected_views(config, scene))
  with checkpoints.manager(storage.join(workdir, "checkpoints"), read_only=True) as mngr:
    state = checkpoints.restore_latest(mngr, template, step, added_fields=ADDED_FIELDS)
  if state is None:
    raise WorkdirError(f"{workdir}: no checkpoint to render (train first, with the same --workdir)")
  return model, with_occupancy_grid(model, config, scene, state)
