"""Training: the jitted train step and the training loop.

Data parallel over every device of every process (see runtime/sharding.py): each process draws its own block of
the global batch, the state is replicated, and every process runs the same loop; only process 0 writes the config,
the scene description, TensorBoard and the progress bar, while all processes take part in checkpoints (orbax) and
renders.
"""
import contextlib
import functools
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils

from jaxnerf import config as config_lib
from jaxnerf import storage
from jaxnerf.data import batching
from jaxnerf.data import images
from jaxnerf.data import loaders
from jaxnerf.errors import ConfigError
from jaxnerf.errors import TrainingDivergedError
from jaxnerf.metrics import quality
from jaxnerf.nerf import losses as losses_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.nerf import occupancy
from jaxnerf.nerf import view_corrections
from jaxnerf.run import checkpoints
from jaxnerf.run import rendering
from jaxnerf.run import state as state_lib
from jaxnerf.run import viewer as viewer_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.runtime import host_memory
from jaxnerf.runtime import interrupts
from jaxnerf.runtime import sharding


def make_loss_fn(model, config, scene):
  """(params, views, batch, key, skip) -> (loss, terms): the training loss of a batch from RayBatcher in `scene`,
  with the views' learned corrections (view_corrections.ViewCorrections, or None) and an occupancy.Skip (or None);
  terms has the losses' parts, the colour MSEs, and with `skip` whether the budget overflowed."""
  near, far = scene.near, scene.far

  def loss_fn(params, views, batch, key, skip):
    background, target, rays = None, batch["rgb"], batch["rays"]
    if config.train.random_background and "alpha" in batch:
      # Transparent pixels show a random colour per ray, so the field cannot explain the background with
      # density of the background's colour (Instant-NGP's trick).
      key, background_key = jax.random.split(key)
      background = jax.random.uniform(background_key, target.shape)
      target = target + (1.0 - batch["alpha"][:, None]) * (background - jnp.asarray(model.background))
    if views is not None and config.views.refine_poses:
      rays = view_corrections.correct_rays(rays, views, batch["view"])
    levels = model.apply({"params": params}, rays, near, far, key, randomized=True, background=background,
                         skip=skip, view=batch.get("view"))
    if views is not None and config.views.color_map:
      shown = jnp.asarray(model.background) if background is None else background
      levels = [level._replace(out=level.out._replace(rgb=view_corrections.correct_color(
          level.out.rgb, level.out.acc, shown, views, batch["view"]))) if level.out.rgb is not None else level
                for level in levels]
    loss, terms = losses_lib.total_loss(levels, target, config.loss, near, far)
    if skip is not None:
      terms["skip_overflow"] = sum(level.overflow.astype(jnp.int32) for level in levels)
    return loss, terms

  return loss_fn


def training_skip(state, config, scene):
  """The occupancy.Skip of a train step from `state`'s grid (with config.occupancy.skip_in_training; None without):
  every cell counts as occupied until the grid's first sweep is done."""
  if not config.occupancy.skip_in_training:
    return None
  cells = rendering.occupied_cells(state.density_grid, config, scene)
  return rendering.skipping(cells | (state.step < occupancy.first_sweep_steps(config.occupancy)), config, scene,
                            training=True)


def micro_batched(value_and_grad, micro_batches, spread):
  """value_and_grad (params, views, batch, key, skip) -> ((loss, terms), grads) computed over `micro_batches`
  equal parts of the batch one after another (a lax.scan), their losses, terms and gradients averaged (integer
  terms, counts, summed): the same loss and gradient in expectation (each part draws its own jitter), with the
  memory of one part; with several devices, each part's gradient is all-reduced. Part i takes rays i,
  i + micro_batches, ..., so that every device holds its share of each part (`spread` splits a part over the
  devices); part i's key is fold_in(key, i). With one micro-batch, value_and_grad itself."""
  if micro_batches == 1:
    return value_and_grad

  def parts(x):  # [n, ...] -> [micro_batches, n / micro_batches, ...]
    return jnp.swapaxes(x.reshape(-1, micro_batches, *x.shape[1:]), 0, 1)

  def averaged(params, views, batch, key, skip):
    def one_part(total, part):
      index, part_batch = part
      result = value_and_grad(params, views, spread(part_batch), jax.random.fold_in(key, index), skip)
      add = lambda t, r: t + (r / micro_batches if jnp.issubdtype(r.dtype, jnp.floating) else r)
      return jax.tree.map(add, total, result), None

    first = jax.eval_shape(lambda part: value_and_grad(params, views, part, key, skip),
                           jax.tree.map(lambda x: parts(x)[0], batch))
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), first)
    total, _ = jax.lax.scan(one_part, zeros, (jnp.arange(micro_batches), jax.tree.map(parts, batch)))
    return total

  return averaged


def make_train_step(model, optimizer, config, scene):
  """A jitted (state, batch, key) -> (state, metrics) for batches from RayBatcher, in `scene` (its ray bounds and
  the box of its occupancy grid).

  Compiled for sharding.data_mesh(): the batch is split over its devices, everything else replicated; the mean
  loss over the global batch makes XLA all-reduce the gradients.

  A step whose loss or gradients are not finite leaves parameters and optimizer state unchanged; it still
  advances the step (the next step sees the next batch) and is counted in the state. If renders or training skip
  empty space (config.occupancy.skip_empty, skip_in_training), every config.occupancy.update_every steps the
  occupancy grid is refreshed from the new parameters; with skip_in_training, once the grid's first sweep is done,
  the fields are evaluated only at samples in its occupied cells (one differentiable call per level).
  """
  grid = config.occupancy
  mesh = sharding.data_mesh()
  views_optimizer = state_lib.make_views_optimizer(config)
  loss_fn = make_loss_fn(model, config, scene)

  def refreshed_grid(state, params, key):
    return occupancy.refresh_from_field(
        state_lib.grid_density(model, params), state.density_grid, jax.random.fold_in(key, 1 << 20),
        state.step // grid.update_every, grid, scene.scene_box, config.model.contraction, sharding.spread_over(mesh))

  gradients = micro_batched(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True), config.train.micro_batches,
                            sharding.spread_over(mesh))

  @functools.partial(jax.jit, in_shardings=(sharding.replicated(mesh), sharding.split(mesh),
                                            sharding.replicated(mesh)),
                     out_shardings=sharding.replicated(mesh))
  def train_step(state, batch, key):
    (loss, terms), (grads, view_grads) = gradients(state.params, state.views, batch, key,
                                                   training_skip(state, config, scene))
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    views, views_opt_state = state.views, state.views_opt_state
    if views is not None:
      view_updates, views_opt_state = views_optimizer.update(view_grads, views_opt_state, views)
      views = view_corrections.anchored(optax.apply_updates(views, view_updates))
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(view_grads))
    keep_if_finite = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    skipped = (~finite).astype(jnp.int32)
    params = keep_if_finite(params, state.params)
    density_grid = state.density_grid
    if grid.skip_empty or grid.skip_in_training:  # the grid is read only by what skips empty space
      density_grid = jax.lax.cond(state.step % grid.update_every == 0, lambda: refreshed_grid(state, params, key),
                                  lambda: state.density_grid)
    new_state = state.replace(
        step=state.step + 1, params=params, opt_state=keep_if_finite(opt_state, state.opt_state),
        density_grid=density_grid, views=keep_if_finite(views, state.views),
        views_opt_state=keep_if_finite(views_opt_state, state.views_opt_state),
        nonfinite_streak=(state.nonfinite_streak + 1) * skipped, nonfinite_total=state.nonfinite_total + skipped)
    metrics = {"loss": loss, "psnr": quality.psnr_from_mse(terms.pop("mse")),
               "psnr_coarse": quality.psnr_from_mse(terms.pop("mse_coarse")), "grad_norm": grad_norm,
               **{name if name == "skip_overflow" else f"loss_{name}": value for name, value in terms.items()}}
    return new_state, metrics

  return train_step


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


def train_and_evaluate(config, workdir, viewer_port=None):
  """Train a NeRF on config.data's scene, checkpointing to workdir and resuming from its latest checkpoint; with
  `viewer_port`, serving the live viewer (run/viewer.py) there, in a single-process run.

  Returns:
    The final TrainState.
  """
  config_lib.validate(config, jax.device_count())
  lead = workdir_lib.is_lead_process()
  # Each process holds its share of the training photos, and draws its block of every batch from them.
  share = (jax.process_index(), jax.process_count()) if jax.process_count() > 1 else None
  train_views = loaders.load_views(config, "train", share=share)
  loaders.check_held_out(config)
  scene = loaders.scene_of(config, train_views, training=True)
  val_views = loaders.load_views(config, "val", stride=10**9) if config.train.val_every else None

  model = model_lib.build_model(config, scene)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer, state_lib.corrected_views(config, scene))
  workdir_lib.prepare_workdir(config, workdir)
  live = _open_viewer(config, workdir, scene, model, train_views, viewer_port)
  with checkpoints.manager(storage.join(workdir, "checkpoints"), config.train.keep_checkpoints) as mngr, \
       StopRequest() as stop, contextlib.ExitStack() as closing:
    if live is not None:
      closing.callback(live.close)
    restored = checkpoints.restore_latest(mngr, state, added_fields=state_lib.ADDED_FIELDS)
    if restored is not None:
      state = state_lib.with_occupancy_grid(model, config, scene, restored)
    if lead:
      workdir_lib.write_config(config, workdir)
      workdir_lib.write_scene(scene, workdir)
    if live is not None:
      live.warm_up(state)
    state = _train_loop(config, workdir, scene, model, optimizer, state, train_views, val_views, mngr, stop, live)
  return state


def _open_viewer(config, workdir, scene, model, train_views, port):
  """The TrainingViewer on `port` (None: no viewer), its URL printed."""
  if port is None:
    return None
  if jax.process_count() > 1:
    raise ConfigError("--viewer: the live viewer runs in single-process training only (use view.py on the workdir)")
  live = viewer_lib.TrainingViewer(config, scene, model, train_views, port, os.path.join(workdir, "camera_paths"))
  print(f"viewer at {live.url}", flush=True)
  return live


def _train_loop(config, workdir, scene, model, optimizer, state, train_views, val_views, mngr, stop, live=None):
  """Steps from state.step to config.train.max_steps, logging, validating and checkpointing on the way."""
  lead = workdir_lib.is_lead_process()
  start = int(state.step)
  train_step = make_train_step(model, optimizer, config, scene)
  render_chunk = rendering.make_render_chunk(model, scene, config)
  # Each process draws its own block of every global batch, from its own random stream.
  batcher = batching.RayBatcher(train_views, sharding.local_batch_size(config.train.batch_size),
                                config.train.batching, config.train.precrop_steps, config.train.precrop_fraction,
                                seed=config.train.seed, stream=jax.process_index())
  mesh = sharding.data_mesh()
  base_key = jax.random.wrap_key_data(state.key)
  writer = workdir_lib.EventWriter(workdir) if lead else None
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
      rays_per_sec = interval_steps * config.train.batch_size / (time.perf_counter() - interval_start)
      interval_start, interval_steps = time.perf_counter(), 0
      _log_step(writer, progress, config, state, jax.tree.map(float, step_metrics), rays_per_sec, done)
    if live is not None:
      live.after_step(done, state, step_metrics)
    if val_views is not None and done % config.train.val_every == 0:
      _log_validation(writer, render_chunk, state, val_views, config, scene, done)
    stopping = stop.at(done)
    if done % config.train.checkpoint_every == 0 or done == config.train.max_steps or stopping:
      checkpoints.save(mngr, done, state)
      if lead:
        writer.flush()  # on object storage, uploads the events so far
        if state.views is not None:
          workdir_lib.write_view_corrections(workdir, scene, train_views.cam_to_world, state.views)
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


def _log_step(writer, progress, config, state, step_metrics, rays_per_sec, step):
  for name, value in step_metrics.items():
    writer.add_scalar(f"train/{name}", value, step)
  writer.add_scalar("train/rays_per_sec", rays_per_sec, step)
  writer.add_scalar("train/nonfinite_steps", int(state.nonfinite_total), step)
  writer.add_scalar("train/learning_rate", float(state_lib.learning_rate_schedule(config.train)(step)), step)
  memory = host_memory.resident_memory()
  if memory is not None:  # this process's: the lead's, on several hosts
    writer.add_scalar("host/resident_gib", memory[0] / 2**30, step)
    writer.add_scalar("host/peak_resident_gib", memory[1] / 2**30, step)
  progress.set_postfix(loss=f"{step_metrics['loss']:.4f}", psnr=f"{step_metrics['psnr']:.2f}",
                       rays_per_s=f"{rays_per_sec:.0f}")


def _log_validation(writer, render_chunk, state, views, config, scene, step):
  """Render the first validation view into TensorBoard (writer None: render only, to take part in the
  collective render on a process that does not write)."""
  out = rendering.render_rays(render_chunk, rendering.render_variables(state, config, scene), views.image_rays(0),
                              config.eval.chunk)
  if writer is None:
    return
  psnr = float(quality.psnr_from_mse(np.mean((out["rgb"] - views.images[0]) ** 2)))
  writer.add_scalar("val/psnr", psnr, step)
  writer.add_image("val/rgb", images.to_uint8(np.concatenate([out["rgb"], views.images[0]], axis=1)), step,
                   dataformats="HWC")
  writer.add_image("val/depth", rendering.depth_to_image(out, config)[0], step, dataformats="HWC")
