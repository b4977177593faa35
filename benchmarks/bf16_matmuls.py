"""Where bfloat16 pays on this backend: one paper-model layer's matmuls, and the paper model's train step, in float32
and bfloat16 (a benchmark, not a test).

  python benchmarks/bf16_matmuls.py [--rows=262144] [--width=256] [--repeats=5] [--train_steps=6]

The first table times the three matmuls of one [rows, width] x [width, width] layer (forward, input gradient,
weight gradient) as flax's float32 Dense differentiates them, as bfloat16 with XLA left to lay out the transposes,
and as bfloat16 with the transposes pinned row-major as layers.matmul_in does on CPU (plus that transpose's own
time). The second times configs/blender.py's train step (1024 rays) and render call (8192 rays) in float32 and
with model.compute_dtype bfloat16, alternating the two in one process so that a busy or drifting machine slows
both alike. Times are medians.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts (as in train.py)
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxnerf.run import rendering as render
from jaxnerf.runtime import sharding
from jaxnerf.run import train as train_lib
from jaxnerf.nerf import layers
from jaxnerf.run import state as state_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.data import scene as scene_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark  # noqa: E402  (its models, random rays and timing)

flags.DEFINE_integer("rows", 262144, "rows of the layer's input (1024 rays x 256 samples)")
flags.DEFINE_integer("width", 256, "the layer's input and output width")
flags.DEFINE_integer("repeats", 5, "timed calls per matmul")
flags.DEFINE_integer("train_steps", 6, "timed train steps and render calls per dtype (0: skip them)")
FLAGS = flags.FLAGS


def layer_table():
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (FLAGS.rows, FLAGS.width))
  g = jax.random.normal(keys[1], (FLAGS.rows, FLAGS.width))
  w = jax.random.normal(keys[2], (FLAGS.width, FLAGS.width)) / FLAGS.width ** 0.5
  bf16 = [a.astype(jnp.bfloat16) for a in (x, g, w)]
  f32 = jnp.float32
  dot = lambda a, b: jnp.dot(a, b, preferred_element_type=f32)
  pinned = layers.row_major_transpose  # what layers.matmul_in uses
  rows = [
      ("forward x w", jax.jit(lambda x, g, w: x @ w), jax.jit(lambda x, g, w: dot(x, w)), None),
      ("input gradient g w^T", jax.jit(lambda x, g, w: g @ w.T), jax.jit(lambda x, g, w: dot(g, w.T)),
       jax.jit(lambda x, g, w: dot(g, pinned(w)))),
      ("weight gradient x^T g", jax.jit(lambda x, g, w: x.T @ g), jax.jit(lambda x, g, w: dot(x.T, g)),
       jax.jit(lambda x_t, g, w: dot(x_t, g))),
  ]
  transpose = jax.jit(pinned)
  x_t = jax.block_until_ready(transpose(bf16[0]))
  flops = 2 * FLAGS.rows * FLAGS.width ** 2
  print(f"One layer, [{FLAGS.rows}, {FLAGS.width}] x [{FLAGS.width}, {FLAGS.width}], "
        f"{jax.default_backend()}, median ms (GFLOP/s):\n")
  print("| matmul                 | float32        | bfloat16, XLA's layout | bfloat16, transposes pinned |")
  print("|------------------------|----------------|------------------------|-----------------------------|")
  fmt = lambda s: f"{s * 1e3:.0f} ms ({flops / s / 1e9:.0f})"
  for name, as_f32, as_bf16, as_pinned in rows:
    cells = [fmt(benchmark.timed(lambda: as_f32(x, g, w), FLAGS.repeats)),
             fmt(benchmark.timed(lambda: as_bf16(*bf16), FLAGS.repeats))]
    if as_pinned is None:
      cells.append(cells[-1])
    else:
      args = (x_t, bf16[1], bf16[2]) if name.startswith("weight") else bf16
      cells.append(fmt(benchmark.timed(lambda: as_pinned(*args), FLAGS.repeats)))
    print(f"| {name:22s} | {cells[0]:14s} | {cells[1]:22s} | {cells[2]:27s} |")
  seconds = benchmark.timed(lambda: transpose(bf16[0]), FLAGS.repeats)
  print(f"\nThe pinned transpose of the bfloat16 input (kept for the weight gradient): {seconds * 1e3:.0f} ms\n")


def step_table():
  rays, chunk = 1024, 8192
  rng = np.random.default_rng(0)
  mesh = sharding.data_mesh()
  batch = sharding.from_process_batches(
      mesh, {"rays": benchmark.random_rays(rng, rays), "rgb": rng.uniform(size=(rays, 3)).astype(np.float32)},
      rays)
  chunk_rays = sharding.from_same_on_all(mesh, benchmark.random_rays(rng, chunk))
  key = jax.random.key(0)
  calls = {}
  for name in ("classic", "classic_bf16"):
    config = benchmark.MODELS[name]()
    config.train.batch_size = rays
    model = model_lib.build_model(config)
    optimizer = state_lib.make_optimizer(config.train)
    state = state_lib.create_train_state(config, model, optimizer)
    step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
    state = state.replace(step=jnp.ones_like(state.step))  # no grid refresh, as benchmark.py times it
    render_chunk = render.make_render_chunk(model, scene_lib.of_settings(config.data), config)
    calls[name] = (lambda step=step, state=state: step(state, batch, key)[1],
                   lambda render_chunk=render_chunk, state=state: render_chunk({"params": state.params}, chunk_rays))
    for call in calls[name]:
      jax.block_until_ready(call())  # compile
  seconds = {(name, kind): [] for name in calls for kind in (0, 1)}
  for _ in range(FLAGS.train_steps):
    for name, pair in calls.items():
      for kind, call in enumerate(pair):
        start = time.perf_counter()
        jax.block_until_ready(call())
        seconds[name, kind].append(time.perf_counter() - start)
  median = {k: float(np.median(v)) for k, v in seconds.items()}
  print(f"configs/blender.py, {FLAGS.train_steps} train steps of {rays} rays and render calls of {chunk} rays "
        "per dtype, alternating:\n")
  print("| dtype    | train step (median) | train rays/s | render call (median) | render rays/s |")
  print("|----------|---------------------|--------------|----------------------|---------------|")
  for name, dtype in (("classic", "float32"), ("classic_bf16", "bfloat16")):
    train, draw = median[name, 0], median[name, 1]
    print(f"| {dtype:8s} | {f'{train * 1e3:.0f} ms':19s} | {rays / train:12.0f} | {f'{draw * 1e3:.0f} ms':20s} | "
          f"{chunk / draw:13.0f} |")
  print(f"\nbfloat16 / float32 speed: train {median['classic', 0] / median['classic_bf16', 0]:.2f}x, "
        f"render {median['classic', 1] / median['classic_bf16', 1]:.2f}x")


def main(argv):
  del argv
  layer_table()
  if FLAGS.train_steps:
    step_table()


if __name__ == "__main__":
  app.run(main)
