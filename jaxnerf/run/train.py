"""Training: optimizer and schedule, the jitted train step, and the training loop.

Data parallel over every device of every process (see sharding.py): each process draws its own block of the
global batch, the state is replicated, and every process runs the same loop; only process 0 writes the config,
TensorBoard and the progress bar, while all processes take part in checkpoints (orbax) and renders.
"""
import contextlib
import functools
import json
import os
import signal
import tempfile
import threading
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils
from tensorboardX import SummaryWriter

from jaxnerf.run import checkpoints
from jaxnerf import config as config_lib
from jaxnerf.runtime import interrupts
from jaxnerf.nerf import losses as losses_lib
from jaxnerf.metrics import quality as metrics_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import occupancy
from jaxnerf.core import rays as rays_lib
from jaxnerf.run import rendering as render
from jaxnerf.runtime import sharding
from jaxnerf.data import batching
from jaxnerf.data import loaders
from jaxnerf.errors import TrainingDivergedError
from jaxnerf.errors import WorkdirError


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # [] int32, completed steps
  params: Any
  opt_state: Any
  key: jnp.ndarray  # [2] uint32 raw key data; the key of step i is fold_in(key, i)
  nonfinite_streak: jnp.ndarray  # [] int32, steps in a row skipped for a non-finite loss or gradient
  nonfinite_total: jnp.ndarray  # [] int32, all skipped steps
  density_grid: jnp.ndarray  # [R, R, R] float32, the occupancy grid's densities (occupancy.py)


def learning_rate_schedule(train_config):
  """Log-linear decay from lr_init to lr_final over max_steps, optionally eased in over lr_delay_steps from
  lr_init * lr_delay_mult (a sine ramp)."""
  c = train_config

  def schedule(step):
    progress = jnp.clip(step / c.max_steps, 0.0, 1.0)
    lr = jnp.exp(jnp.log(c.lr_init) * (1.0 - progress) + jnp.log(c.lr_final) * progress)
    if c.lr_delay_steps > 0:
      ramp = jnp.sin(0.5 * jnp.pi * jnp.clip(step / c.lr_delay_steps, 0.0, 1.0))
      lr = lr * (c.lr_delay_mult + (1.0 - c.lr_delay_mult) * ramp)
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


def build_model(config):
  return model_lib.build_model(config)


def init_params(model, key, near=2.0, far=6.0):
  """Initial parameters (they do not depend on the batch size)."""
  rays = rays_lib.Rays(*(jnp.ones((1, 3), jnp.float32),) * 3)
  return model.init(key, rays, near, far, key, randomized=False)["params"]


def create_train_state(config, model, optimizer):
  """The initial state, replicated over sharding.data_mesh() (every process computes the same values)."""

  @functools.partial(jax.jit, out_shardings=sharding.replicated(sharding.data_mesh()))
  def create():
    key = jax.random.key(config.train.seed)
    params = init_params(model, jax.random.fold_in(key, 0), config.data.near, config.data.far)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, opt_state=optimizer.init(params),
                      key=jax.random.key_data(jax.random.fold_in(key, 1)), nonfinite_streak=zero,
                      nonfinite_total=zero, density_grid=occupancy.empty_grid(config.occupancy.resolution))

  return create()


def make_train_step(model, optimizer, config):
  """A jitted (state, batch, key) -> (state, metrics) for batches from RayBatcher.

  Compiled for sharding.data_mesh(): the batch is split over its devices, everything else replicated; the mean
  loss over the global batch makes XLA all-reduce the gradients.

  A step whose loss or gradients are not finite leaves parameters and optimizer state unchanged; it still
  advances the step (the next step sees the next batch) and is counted in the state. If renders or training skip
  empty space (config.occupancy.skip_empty, skip_in_training), every config.occupancy.update_every steps the
  occupancy grid is refreshed from the new parameters; with skip_in_training, once the grid's first sweep is done,
  the fields are evaluated only at samples in its occupied cells (Renderer's `differentiable` mode).
  """
  near, far = config.data.near, config.data.far
  grid = config.occupancy
  mesh = sharding.data_mesh()

  def loss_fn(params, batch, key, skip):
    background, target = None, batch["rgb"]
    if config.train.random_background and "alpha" in batch:
      # Transparent pixels show a random colour per ray, so the field cannot explain the background with
      # density of the background's colour (Instant-NGP's trick).
      key, background_key = jax.random.split(key)
      background = jax.random.uniform(background_key, target.shape)
      target = target + (1.0 - batch["alpha"][:, None]) * (background - jnp.asarray(model.background))
    levels = model.apply({"params": params}, batch["rays"], near, far, key, randomized=True,
                         background=background, skip=skip)
    loss, terms = losses_lib.total_loss(levels, target, config.loss, near, far)
    if skip is not None:
      terms["skip_overflow"] = sum(level.overflow.astype(jnp.int32) for level in levels)
    return loss, terms

  @functools.partial(jax.jit, in_shardings=(sharding.replicated(mesh), sharding.split(mesh),
                                            sharding.replicated(mesh)),
                     out_shardings=sharding.replicated(mesh))
  def train_step(state, batch, key):
    skip = None
    if grid.skip_in_training:  # once every cell of the grid has been refreshed
      cells = render.occupied_cells(state.density_grid, config) | (state.step < occupancy.first_sweep_steps(grid))
      skip = render.skipping(cells, config, training=True)
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key, skip)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    skipped = (~finite).astype(jnp.int32)
    params = keep_if_finite(params, state.params)
    density_grid = state.density_grid
    if grid.skip_empty or grid.skip_in_training:  # the grid is read only by what skips empty space
      density_grid = jax.lax.cond(
          state.step % grid.update_every == 0,
          lambda g: occupancy.refresh_from_field(
              grid_density(model, params), g, jax.random.fold_in(key, 1 << 20), state.step // grid.update_every,
              grid, config.data.scene_box, config.model.contraction, sharding.spread_over(mesh)),
          lambda g: g, density_grid)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=keep_if_finite(opt_state, state.opt_state),
        density_grid=density_grid,
        nonfinite_streak=(state.nonfinite_streak + 1) * skipped, nonfinite_total=state.nonfinite_total + skipped)
    metrics = {"loss": loss, "psnr": metrics_lib.psnr_from_mse(terms.pop("mse")),
               "psnr_coarse": metrics_lib.psnr_from_mse(terms.pop("mse_coarse")), "grad_norm": grad_norm,
               **{name if name == "skip_overflow" else f"loss_{name}": value for name, value in terms.items()}}
    return new_state, metrics

  return train_step


def grid_density(model, params):
  """The finest field's density at points [n, 3] -> [n], with `params` as an argument of compiled calls."""
  return jax.tree_util.Partial(lambda params, points: model.apply({"params": params}, points,
                                                                  method=model.field_at)[1], params)


def with_occupancy_grid(model, config, state):
  """`state`, with an occupancy grid computed from its field if renders skip empty space and the grid was never
  refreshed (a checkpoint written before the grid was part of the training state)."""
  if config.occupancy.skip_empty and int(state.step) > 0 and not np.any(np.asarray(state.density_grid)):
    grid = occupancy.full_grid(grid_density(model, state.params), config.occupancy, config.data.scene_box,
                               config.model.contraction, jax.random.key(0), sharding.spread_over(sharding.data_mesh()))
    return state.replace(density_grid=jax.device_put(grid, state.density_grid.sharding))
  return state


def prepare_workdir(config, workdir):
  """Create the workdir and check that it can hold this run, before anything in it is written.

  Raises WorkdirError if it cannot be created or written, or if it holds a run whose model differs from
  config.model (its checkpoints would not fit).
  """
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise WorkdirError(f"{workdir}: cannot write to the workdir ({e.strerror or e})") from None
  saved_path = os.path.join(workdir, "config.json")
  if os.path.exists(saved_path):
    try:
      with open(saved_path) as f:
        saved = json.load(f)
      saved = {"model": saved["model"], "occupancy": saved.get("occupancy", {})}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
      raise WorkdirError(f"{saved_path}: not a jaxnerf run config; use another --workdir") from None
    # Fields added to the schema after the run was made count at their defaults, which is how the run behaved.
    saved = {**_checkpoint_shaping(config_lib.base_config()), **_checkpoint_shaping(saved)}
    current = _checkpoint_shaping(config)
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if changed:
      diffs = ", ".join(f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in changed)
      raise WorkdirError(f"{saved_path}: the run in this workdir has another model ({diffs}); "
                         "use another --workdir or the same model settings")


def _checkpoint_shaping(config):
  """The settings that fix the shapes of a run's checkpoints, flat ("model.mlp.width": 128), from a config or
  the dict of a saved config.json: all of `model` and the occupancy grid's resolution."""
  if not isinstance(config, dict):
    config = json.loads(config.to_json_best_effort())
  model = config.get("model")
  flat = flax.traverse_util.flatten_dict(model, sep=".") if isinstance(model, dict) else {}
  flat = {f"model.{k}": v for k, v in flat.items()}
  occupancy = config.get("occupancy")
  if isinstance(occupancy, dict) and "resolution" in occupancy:
    flat["occupancy.resolution"] = occupancy["resolution"]
  return flat


def is_lead_process():
  """Whether this process writes files and progress that all processes would otherwise write alike."""
  return jax.process_index() == 0


def write_config(config, workdir):
  """Save the resolved config next to the checkpoints."""
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


class StopRequest:
  """SIGTERM (a preemption notice) or Ctrl-C (SIGINT): the loop saves a checkpoint and stops.

  With several processes, JAX's preemption service catches SIGTERM on any of them and picks one step at which all
  stop together (they must, since saving is collective), and Ctrl-C on one of them raises SIGTERM there; alone, a
  Python handler sets a flag. A second Ctrl-C, or one before the first step is done (while it compiles), ends the
  process at once (see interrupts.py): a save it cuts short leaves only orbax's temporary folder, which the next
  start removes.
  """

  def __init__(self):
    self.requested = False
    self.interrupted = False  # by Ctrl-C, rather than SIGTERM
    self.stepped = False  # a step has run since the start: before that, Ctrl-C has nothing to save and stops at once

  def __enter__(self):
    self._previous = None
    self._exit_stack = contextlib.ExitStack()
    if threading.current_thread() is threading.main_thread():
      if jax.process_count() == 1:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._exit_stack.enter_context(interrupts.graceful(self._handle_interrupt))
    return self

  def at(self, step):
    """Whether to stop after `step`; called by every process at every step."""
    self.stepped = True
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def message(self, step, workdir):
    reason = "interrupted (Ctrl-C)" if self.interrupted else "SIGTERM"
    return f"{reason}: saved a checkpoint at step {step} in {workdir}; run the same command to resume"

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def _handle_interrupt(self):
    if self.interrupted or not self.stepped:
      return False  # the second Ctrl-C, or one while the first step compiles: do not wait
    self.interrupted = True
    if jax.process_count() > 1:
      os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption service, which stops every process together
    self.requested = True
    return True

  def __exit__(self, *exc):
    self._exit_stack.close()
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config, workdir):
  """Train a NeRF on config.data's scene, checkpointing to workdir and resuming from its latest checkpoint.

  Returns:
    The final TrainState.
  """
  config_lib.validate(config, jax.device_count())
  lead = is_lead_process()
  train_views = loaders.load_views(config, "train")
  config = loaders.with_scene_bounds(config, train_views)
  val_views = loaders.load_views(config, "val", stride=10**9) if config.train.val_every else None

  model = build_model(config)
  optimizer = make_optimizer(config.train)
  state = create_train_state(config, model, optimizer)
  prepare_workdir(config, workdir)
  with checkpoints.manager(os.path.join(workdir, "checkpoints"), config.train.keep_checkpoints) as mngr, \
       StopRequest() as stop:
    restored = checkpoints.restore_latest(mngr, state)
    if restored is not None:
      state = with_occupancy_grid(model, config, restored)
    if lead:
      write_config(config, workdir)

    start = int(state.step)
    train_step = make_train_step(model, optimizer, config)
    render_chunk = render.make_render_chunk(model, config.data.near, config.data.far, config)
    # Each process draws its own block of every global batch, from its own random stream.
    batcher = batching.RayBatcher(train_views, sharding.local_batch_size(config.train.batch_size),
                                  config.train.batching, config.train.precrop_steps, config.train.precrop_fraction,
                                  seed=config.train.seed, stream=jax.process_index())
    mesh = sharding.data_mesh()
    base_key = jax.random.wrap_key_data(state.key)
    writer = SummaryWriter(os.path.join(workdir, "tensorboard")) if lead else None
    progress = tqdm.tqdm(total=config.train.max_steps, initial=start, unit="step", dynamic_ncols=True,
                         desc="resumed" if start else "training", mininterval=1.0, disable=not lead)
    interval_start, interval_steps = time.perf_counter(), 0
    for step in range(start, config.train.max_steps):
      batch = sharding.from_process_batches(mesh, batcher(step), config.train.batch_size)
      state, step_metrics = train_step(state, batch, jax.random.fold_in(base_key, step))
      done = step + 1
      interval_steps += 1
      progress.update(1)
      # Reading the streak also waits for the step: CPU collectives can deadlock when many steps are queued.
      streak = int(state.nonfinite_streak)
      if streak >= config.train.max_nonfinite_steps:
        progress.close()
        raise TrainingDivergedError(
            f"steps {done - streak + 1}..{done}: loss or gradients not finite {streak} steps in a row "
            f"(train.max_nonfinite_steps); stopped without saving, the last checkpoint in {workdir} is intact. "
            "Try a lower train.lr_init or set train.grad_max_norm.")
      if lead and (done % config.train.log_every == 0 or done == config.train.max_steps):
        step_metrics = jax.tree.map(float, step_metrics)
        rays_per_sec = interval_steps * config.train.batch_size / (time.perf_counter() - interval_start)
        interval_start, interval_steps = time.perf_counter(), 0
        for name, value in step_metrics.items():
          writer.add_scalar(f"train/{name}", value, done)
        writer.add_scalar("train/rays_per_sec", rays_per_sec, done)
        writer.add_scalar("train/nonfinite_steps", int(state.nonfinite_total), done)
        writer.add_scalar("train/learning_rate", float(learning_rate_schedule(config.train)(done)), done)
        progress.set_postfix(loss=f"{step_metrics['loss']:.4f}", psnr=f"{step_metrics['psnr']:.2f}",
                             rays_per_s=f"{rays_per_sec:.0f}")
      if val_views is not None and done % config.train.val_every == 0:
        _log_validation(writer, render_chunk, state, val_views, config, done)
      stopping = stop.at(done)
      if done % config.train.checkpoint_every == 0 or done == config.train.max_steps or stopping:
        checkpoints.save(mngr, done, state)
      if stopping:
        if stop.interrupted:  # ends the command with exit code 130 (cli.py prints the line)
          progress.close()
          raise interrupts.Interrupted(stop.message(done, workdir))
        if lead:
          progress.write(stop.message(done, workdir))
        break
    progress.close()
    if lead:
      writer.close()
  return state


def _log_validation(writer, render_chunk, state, views, config, step):
  """Render the first validation view into TensorBoard (writer None: render only, to take part in the
  collective render on a process that does not write)."""
  out = render.render_rays(render_chunk, render.render_variables(state, config), views.image_rays(0),
                           config.eval.chunk)
  if writer is None:
    return
  psnr = float(metrics_lib.psnr_from_mse(np.mean((out["rgb"] - views.images[0]) ** 2)))
  writer.add_scalar("val/psnr", psnr, step)
  writer.add_image("val/rgb", render.to_uint8(np.concatenate([out["rgb"], views.images[0]], axis=1)), step,
                   dataformats="HWC")
  writer.add_image("val/depth", render.depth_to_image(out["depth"], out["acc"], config.data.near, config.data.far),
                   step, dataformats="HW")
