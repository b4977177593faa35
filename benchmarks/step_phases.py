"""Where a training step's time goes, on a trained run's state and its real batches (a benchmark, not a test).

  python benchmarks/step_phases.py --config=configs/blender_fast.py --config.data.data_dir=PATH/lego \\
      --workdir=RUN [--steps=5]

Restores the run's latest checkpoint (so that the fields, and the occupancy grid that training skips empty space
by, are those of real training) and times, as medians of --steps calls each after a compiling one, jitted pieces
of the step on batches that RayBatcher draws from the training photos:

  batch           drawing a batch on the host (RayBatcher) and putting it on the devices
  proposal levels the samplers and density-only fields of the levels before the last, forward
  forward         all levels and the losses, forward
  backward        value_and_grad of the loss, less the forward
  optimizer       the Adam update of the parameters (optax), alone
  grid refresh    the occupancy grid's refresh, which runs every occupancy.update_every steps, per step
  whole step      train_step as training runs it (with a refresh every update_every steps), plus the batch

and the peak resident memory of the process. Prints one table.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts (as in train.py)
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import resource
import time

from absl import app
from absl import flags
import jax
import numpy as np
import optax
from ml_collections import config_flags

from jaxnerf.data import batching
from jaxnerf.data import loaders
from jaxnerf.nerf import occupancy
from jaxnerf.run import state as state_lib
from jaxnerf.run import train as train_lib
from jaxnerf.run import workdir as workdir_lib
from jaxnerf.runtime import sharding

config_flags.DEFINE_config_file("config", None, "the run's config file", lock_config=False)
flags.DEFINE_string("workdir", None, "a run of that config", required=True)
flags.DEFINE_integer("steps", 5, "timed repetitions of each piece")
FLAGS = flags.FLAGS


def timed(fn, repeats):
  """Median seconds of `repeats` calls of fn() after one warm-up call; each call is waited for."""
  jax.block_until_ready(fn(0))
  seconds = []
  for i in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(i + 1))
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


def phases(config, workdir, repeats):
  """{phase: seconds per step}."""
  views = loaders.load_views(config, "train")
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views, training=True))
  model, state = state_lib.restore_trained(config, workdir, scene)
  mesh = sharding.data_mesh()
  batcher = batching.RayBatcher(views, config.train.batch_size, config.train.batching, seed=config.train.seed)
  first = int(state.step)

  def batch(i):
    return sharding.from_process_batches(mesh, batcher(first + i), config.train.batch_size)

  batches = [batch(i) for i in range(repeats + 1)]
  keys = [jax.random.key(i) for i in range(repeats + 1)]
  loss_fn = train_lib.make_loss_fn(model, config, scene)
  proposal_levels = model.clone(samplers=model.samplers[:-1], level_fields=model.level_fields[:-1])
  skip = lambda s: train_lib.training_skip(s, config, scene)
  forward = jax.jit(lambda s, b, k: loss_fn(s.params, s.views, b, k, skip(s))[0])
  proposal = jax.jit(lambda s, b, k: proposal_levels.apply({"params": s.params}, b["rays"], scene.near, scene.far,
                                                           k, randomized=True, skip=skip(s)))
  gradient = jax.jit(lambda s, b, k: jax.value_and_grad(loss_fn, has_aux=True)(s.params, s.views, b, k, skip(s)))
  optimizer = state_lib.make_optimizer(config.train)
  grads = gradient(state, batches[0], keys[0])[1]

  @jax.jit
  def update(s, g):
    updates, opt_state = optimizer.update(g, s.opt_state, s.params)
    return optax.apply_updates(s.params, updates), opt_state

  refresh = jax.jit(lambda s, k: occupancy.refresh_from_field(
      state_lib.grid_density(model, s.params), s.density_grid, k, s.step // config.occupancy.update_every,
      config.occupancy, scene.scene_box, config.model.contraction, sharding.spread_over(mesh)))
  train_step = train_lib.make_train_step(model, optimizer, config, scene)
  every = config.occupancy.update_every
  # A step number that refreshes no grid cells, and one that does (training's steps cycle through both).
  plain = state.replace(step=state.step + (1 if int(state.step) % every == 0 else 0))
  refreshing = state.replace(step=state.step + (-int(state.step)) % every)
  uses_grid = config.occupancy.skip_empty or config.occupancy.skip_in_training
  result = {
      "batch": timed(batch, repeats),
      "proposal levels": timed(lambda i: proposal(plain, batches[i], keys[i]), repeats),
      "forward": timed(lambda i: forward(plain, batches[i], keys[i]), repeats),
      "forward and backward": timed(lambda i: gradient(plain, batches[i], keys[i]), repeats),
      "optimizer": timed(lambda i: update(plain, grads), repeats),
      "grid refresh": timed(lambda i: refresh(refreshing, keys[i]), repeats) / every if uses_grid else 0.0,
  }
  step_plain = timed(lambda i: train_step(plain, batches[i], keys[i])[1], repeats)
  step_refresh = timed(lambda i: train_step(refreshing, batches[i], keys[i])[1], repeats) if uses_grid else 0.0
  result["whole step"] = result["batch"] + ((every - 1) * step_plain + step_refresh) / every if uses_grid \
      else result["batch"] + step_plain
  return result, first


def main(argv):
  del argv
  config = FLAGS.config
  result, step = phases(config, FLAGS.workdir, FLAGS.steps)
  whole = result["whole step"]
  rows = [("batch", result["batch"]), ("proposal levels (forward)", result["proposal levels"]),
          ("final level and losses (forward)", result["forward"] - result["proposal levels"]),
          ("backward", result["forward and backward"] - result["forward"]), ("optimizer", result["optimizer"]),
          ("grid refresh (per step)", result["grid refresh"])]
  rest = whole - sum(seconds for _, seconds in rows)
  print(f"\n{config.train.batch_size} rays per step, state of step {step}, {jax.device_count()} device(s), "
        f"medians of {FLAGS.steps}\n")
  print("| phase | ms per step | share |\n|---|---|---|")
  for name, seconds in rows + [("the rest (step's own work, overlap)", rest), ("whole step", whole)]:
    print(f"| {name} | {seconds * 1e3:.0f} | {seconds / whole:.0%} |")
  print(f"\npeak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
