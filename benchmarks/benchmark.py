"""Throughput and memory of the NeRF paper model on this machine (a benchmark, not a test).

  python benchmarks/benchmark.py [--rays=1024] [--render_chunk=8192] [--steps=5] [--devices=8]

Prints a table: train-step rays/s of configs/blender.py's model (64 coarse + 128 fine samples), the FLOP rate
that represents (FLOPs counted by XLA for the compiled step) and its fraction of the measured float32 matmul
peak, render rays/s, and peak memory (host RSS on CPU; device peak where the backend reports it).

The steps run data parallel over all devices, as in training (the rays split over them); --devices=N forces
N CPU devices, to measure the overhead of splitting one CPU's work N ways (same global batch).
"""
import os
import resource
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))
import blender  # noqa: E402  (configs/blender.py)

from jaxnerf import rays as rays_lib  # noqa: E402
from jaxnerf import render  # noqa: E402
from jaxnerf import sharding  # noqa: E402
from jaxnerf import train_lib  # noqa: E402

flags.DEFINE_integer("rays", 1024, "rays per train step")
flags.DEFINE_integer("render_chunk", 8192, "rays per render call")
flags.DEFINE_integer("steps", 5, "timed repetitions")
flags.DEFINE_integer("devices", 0, "force this many CPU devices (0: the backend's devices)")
FLAGS = flags.FLAGS


def timed(fn, repeats):
  """Seconds per call of fn() after one warm-up (compilation) call; each call is waited for, as in training
  (queued CPU collectives can deadlock)."""
  jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn())
  return (time.perf_counter() - start) / repeats


def matmul_peak_flops(n=2048, repeats=5):
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  return 2 * n ** 3 / timed(lambda: matmul(a), repeats)


def random_rays(rng, n):
  origins = rng.normal(size=(n, 3)).astype(np.float32)
  origins = 4.0 * origins / np.linalg.norm(origins, axis=-1, keepdims=True)
  directions = (-origins / 4.0 + 0.3 * rng.normal(size=(n, 3))).astype(np.float32)
  return rays_lib.Rays(origins, directions, directions / np.linalg.norm(directions, axis=-1, keepdims=True))


def main(argv):
  del argv
  if FLAGS.devices:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", FLAGS.devices)
  config = blender.get_config()
  config.train.batch_size = FLAGS.rays
  model = train_lib.build_model(config)
  optimizer = train_lib.make_optimizer(config.train)
  state = train_lib.create_train_state(config, model, optimizer)
  train_step = train_lib.make_train_step(model, optimizer, config)
  rng = np.random.default_rng(0)
  mesh = sharding.data_mesh()
  batch = sharding.from_process_batches(
      mesh, {"rays": random_rays(rng, FLAGS.rays), "rgb": rng.uniform(size=(FLAGS.rays, 3)).astype(np.float32)},
      FLAGS.rays)
  key = jax.random.key(0)

  compiled = train_step.lower(state, batch, key).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  step_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  step_seconds = timed(lambda: train_step(state, batch, key)[1], FLAGS.steps)

  render_chunk = render.make_render_chunk(model, config.data.near, config.data.far)
  chunk_rays = sharding.from_same_on_all(mesh, random_rays(rng, FLAGS.render_chunk))
  render_seconds = timed(lambda: render_chunk({"params": state.params}, chunk_rays), FLAGS.steps)

  peak = matmul_peak_flops()
  train_rate = FLAGS.rays / step_seconds
  rows = [
      ("backend", f"{jax.default_backend()} ({jax.devices()[0].device_kind}, {jax.device_count()} device(s))"),
      ("model", f"{config.model.mlp.depth}x{config.model.mlp.width}, "
                f"{config.model.hierarchical.num_coarse_samples} coarse + "
                f"{config.model.hierarchical.num_fine_samples} fine samples"),
      ("train step", f"{step_seconds * 1e3:.0f} ms for {FLAGS.rays} rays"),
      ("train rays/s", f"{train_rate:.0f}"),
      ("train GFLOP/s (XLA count)", f"{step_flops / step_seconds / 1e9:.0f}"),
      ("float32 matmul peak GFLOP/s", f"{peak / 1e9:.0f}"),
      ("fraction of matmul peak", f"{step_flops / step_seconds / peak:.2f}"),
      ("rays/s bound by matmul peak", f"{peak / (step_flops / FLAGS.rays):.0f}"),
      ("render rays/s", f"{FLAGS.render_chunk / render_seconds:.0f} (chunk {FLAGS.render_chunk})"),
      ("peak host memory (RSS)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"),
  ]
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    rows.append(("peak device memory", f"{stats['peak_bytes_in_use'] / 2**30:.2f} GiB"))
  width = max(len(name) for name, _ in rows)
  print(f"| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
  for name, value in rows:
    print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
  app.run(main)
