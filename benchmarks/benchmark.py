"""Throughput and memory of the NeRF paper model and the fast model on this machine (a benchmark, not a test).

  python benchmarks/benchmark.py [--models=classic,classic_bf16,fast] [--rays=1024] [--steps=5] [--devices=8]

Prints one table with a column per model: configs/blender.py (the paper's 8x256 MLPs, 64 coarse + 128 fine
samples) in float32 and with bfloat16 matmuls (model.compute_dtype), and configs/blender_fast.py (hash grid,
proposal sampling). Rows (times are medians of --steps calls): train-step time, rays/s and field
samples/s at --rays rays per step (a step that evaluates every sample and refreshes no occupancy grid cells; the
refresh is timed apart), the FLOP rate XLA counts for the step and its fraction of the measured float32
matmul peak, render rays/s, the time of one 800x800 frame (rendered in full for the fast model, extrapolated from
the render rate for the paper model unless --full_frame), and peak memory (host RSS on CPU; device peak where
the backend reports it). Each model runs in its own process, so that the peak memory is its own.

The steps run data parallel over all devices, as in training (the rays split over them); --devices=N forces
N CPU devices, to measure the overhead of splitting one CPU's work N ways (same global batch).
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts (as in train.py)
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import json
import os
import resource
import subprocess
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
import blender_fast  # noqa: E402

from jaxnerf.core import rays as rays_lib  # noqa: E402
from jaxnerf.run import rendering as render  # noqa: E402
from jaxnerf.runtime import sharding  # noqa: E402
from jaxnerf.run import train as train_lib  # noqa: E402
from jaxnerf.run import state as state_lib  # noqa: E402
from jaxnerf.nerf import model as model_lib  # noqa: E402
from jaxnerf.data import scene as scene_lib  # noqa: E402


def blender_bf16():
  config = blender.get_config()
  config.model.compute_dtype = "bfloat16"
  return config


MODELS = {"classic": blender.get_config, "classic_bf16": blender_bf16, "fast": blender_fast.get_config}

flags.DEFINE_list("models", ["classic", "classic_bf16", "fast"], f"models to measure, of {sorted(MODELS)}")
flags.DEFINE_integer("rays", 1024, "rays per train step")
flags.DEFINE_integer("render_chunk", 8192, "rays per render call")
flags.DEFINE_integer("steps", 5, "timed repetitions")
flags.DEFINE_integer("devices", 0, "force this many CPU devices (0: the backend's devices)")
flags.DEFINE_integer("frame", 800, "width and height of the rendered frame")
flags.DEFINE_bool("full_frame", False, "render the full frame for the paper model too (about 13 minutes on a "
                  "2-core CPU) instead of extrapolating from its render rate")
flags.DEFINE_string("only", "", "internal: measure this one model and print its results as JSON")
FLAGS = flags.FLAGS


def timed(fn, repeats):
  """The median seconds of `repeats` calls of fn() after one warm-up (compilation) call; each call is waited for,
  as in training (queued CPU collectives can deadlock)."""
  jax.block_until_ready(fn())
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


def matmul_peak_flops(n=2048, repeats=5):
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  return 2 * n ** 3 / timed(lambda: matmul(a), repeats)


def random_rays(rng, n):
  origins = rng.normal(size=(n, 3)).astype(np.float32)
  origins = 4.0 * origins / np.linalg.norm(origins, axis=-1, keepdims=True)
  directions = (-origins / 4.0 + 0.3 * rng.normal(size=(n, 3))).astype(np.float32)
  return rays_lib.Rays(origins, directions, directions / np.linalg.norm(directions, axis=-1, keepdims=True))


def frame_rays(size):
  """The rays of a size x size frame from 4 units away, with the Blender scenes' field of view."""
  focal = 0.5 * size / np.tan(0.5 * 0.6911112070083618)
  pose = np.array([[1, 0, 0, 0], [0, 0, -1, -4.0], [0, 1, 0, 0.5]], np.float32)  # looking along +y
  return rays_lib.image_rays(size, size, np.float32(focal), pose, xnp=np)


def samples_per_ray(config):
  """Field evaluations per ray, over all levels."""
  m = config.model
  if m.sampler == "hierarchical":
    h = m.hierarchical
    return h.num_coarse_samples + (h.num_coarse_samples + h.num_fine_samples if h.num_fine_samples else 0)
  return sum(m.proposal.num_samples) + m.proposal.num_final_samples


def describe(config):
  m = config.model
  if m.field == "mlp":
    field = f"{m.mlp.depth}x{m.mlp.width} MLP"
  else:
    field = f"hash {m.hash.num_levels}x{m.hash.features_per_level}, 2^{m.hash.log2_table_size}"
  if m.compute_dtype != "float32":
    field = f"{field} ({m.compute_dtype} matmuls)"
  if m.sampler == "hierarchical":
    return f"{field}, {m.hierarchical.num_coarse_samples} + {m.hierarchical.num_fine_samples} samples"
  return f"{field}, {'+'.join(map(str, m.proposal.num_samples))} proposal + {m.proposal.num_final_samples}"


def measure(name):
  """The figures of one model, as a dict of strings."""
  config = MODELS[name]()
  config.train.batch_size = FLAGS.rays
  model = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer)
  train_step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
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
  # Step 1 refreshes no occupancy grid cells (training does every occupancy.update_every steps, timed apart) and
  # evaluates every sample (training skips empty space only after the grid's first sweep).
  plain_state = state.replace(step=jnp.ones_like(state.step))
  step_seconds = timed(lambda: train_step(plain_state, batch, key)[1], FLAGS.steps)
  uses_grid = config.occupancy.skip_empty or config.occupancy.skip_in_training
  if uses_grid:
    refresh_seconds = timed(lambda: train_step(state, batch, key)[1], FLAGS.steps) - step_seconds

  render_chunk = render.make_render_chunk(model, scene_lib.of_settings(config.data), config)
  chunk_rays = sharding.from_same_on_all(mesh, random_rays(rng, FLAGS.render_chunk))
  render_rate = FLAGS.render_chunk / timed(lambda: render_chunk({"params": state.params}, chunk_rays), FLAGS.steps)
  num_pixels = FLAGS.frame ** 2
  if name == "fast" or FLAGS.full_frame:
    start = time.perf_counter()
    render.render_rays(render_chunk, {"params": state.params}, frame_rays(FLAGS.frame), FLAGS.render_chunk)
    frame = f"{time.perf_counter() - start:.1f} s"
  else:
    frame = f"{num_pixels / render_rate:.0f} s (from the render rate)"

  peak = matmul_peak_flops()
  train_rate = FLAGS.rays / step_seconds
  rows = {
      "model": describe(config),
      "field samples per ray": f"{samples_per_ray(config)}",
      "train step": f"{step_seconds * 1e3:.0f} ms for {FLAGS.rays} rays",
      "train rays/s": f"{train_rate:.0f}",
      "occupancy grid refresh": (f"{refresh_seconds * 1e3:.0f} ms every {config.occupancy.update_every} steps"
                                 if uses_grid else "none"),
      "train samples/s": f"{train_rate * samples_per_ray(config) / 1e6:.2f} M",
      "train GFLOP/s (XLA count)": f"{step_flops / step_seconds / 1e9:.0f}",
      "fraction of float32 matmul peak": f"{step_flops / step_seconds / peak:.2f} (peak {peak / 1e9:.0f} GFLOP/s)",
      "render rays/s": f"{render_rate:.0f} (chunk {FLAGS.render_chunk})",
      f"one {FLAGS.frame}x{FLAGS.frame} frame": frame,
      "peak host memory (RSS)": f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB",
  }
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    rows["peak device memory"] = f"{stats['peak_bytes_in_use'] / 2**30:.2f} GiB"
  return rows


def main(argv):
  del argv
  if FLAGS.devices:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", FLAGS.devices)
  if FLAGS.only:
    print(json.dumps(measure(FLAGS.only)))
    return
  unknown = [m for m in FLAGS.models if m not in MODELS]
  if unknown:
    sys.exit(f"error: --models: unknown {unknown}, expected some of {sorted(MODELS)}")
  columns = {}
  for name in FLAGS.models:
    args = [a for a in sys.argv[1:] if not a.startswith("--models")]
    out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--only={name}", *args], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    columns[name] = json.loads(out.strip().splitlines()[-1])
  header = ["measure", *columns]
  rows = [[measure] + [columns[name].get(measure, "") for name in columns]
          for measure in dict.fromkeys(k for c in columns.values() for k in c)]
  rows.insert(0, ["backend", *[f"{jax.default_backend()}, {jax.device_count()} device(s)"] * len(columns)])
  print_table(header, rows)


def print_table(header, rows):
  """Print a Markdown table with aligned columns."""
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
  print(line(header))
  print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
  for row in rows:
    print(line(row))


if __name__ == "__main__":
  app.run(main)
