"""A fast-mode train step under glibc malloc's defaults and under the entry points' tunables (a benchmark, not a
test).

  python benchmarks/host_memory.py [--rays=8192] [--steps=6]

Times the train step of configs/blender_fast.py (random rays, every sample evaluated, no grid refresh) in three
processes: glibc's defaults; transparent huge pages only (glibc.malloc.hugetlb=1); and the tunables train.py, eval.py
and render.py restart with (jaxnerf/host_memory.py: huge pages, and one heap that keeps freed memory). Prints the
median step time, page faults and user/kernel CPU seconds per step, and peak host memory.
"""
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

from jaxnerf.runtime import host_memory
from jaxnerf.runtime import sharding
from jaxnerf.run import train as train_lib
from jaxnerf.run import state as state_lib
from jaxnerf.nerf import model as model_lib
from jaxnerf.data import scene as scene_lib

import benchmark  # (benchmarks/benchmark.py: its --rays and --steps flags, random rays)

flags.FLAGS.set_default("rays", 8192)
flags.FLAGS.set_default("steps", 6)
flags.DEFINE_bool("measure", False, "internal: measure in this process and print JSON")
FLAGS = flags.FLAGS


def measure():
  config = benchmark.blender_fast.get_config()
  config.train.batch_size = FLAGS.rays
  model = model_lib.build_model(config)
  optimizer = state_lib.make_optimizer(config.train)
  state = state_lib.create_train_state(config, model, optimizer)
  state = state.replace(step=jnp.ones_like(state.step))  # step 0 would refresh the occupancy grid
  train_step = train_lib.make_train_step(model, optimizer, config, scene_lib.of_settings(config.data))
  rng = np.random.default_rng(0)
  batch = sharding.from_process_batches(
      sharding.data_mesh(),
      {"rays": benchmark.random_rays(rng, FLAGS.rays), "rgb": rng.uniform(size=(FLAGS.rays, 3)).astype(np.float32)},
      FLAGS.rays)
  key = jax.random.key(0)
  jax.block_until_ready(train_step(state, batch, key)[1])
  before = resource.getrusage(resource.RUSAGE_SELF)
  seconds = []
  for _ in range(FLAGS.steps):
    start = time.perf_counter()
    jax.block_until_ready(train_step(state, batch, key)[1])
    seconds.append(time.perf_counter() - start)
  after = resource.getrusage(resource.RUSAGE_SELF)
  per_step = lambda field: (getattr(after, field) - getattr(before, field)) / FLAGS.steps
  return {"step (median)": f"{np.median(seconds):.3f} s",
          "page faults per step": f"{per_step('ru_minflt'):.0f}",
          "user CPU per step": f"{per_step('ru_utime'):.2f} s",
          "kernel CPU per step": f"{per_step('ru_stime'):.2f} s",
          "peak host memory (RSS)": f"{after.ru_maxrss / 2**20:.2f} GiB"}


def main(argv):
  del argv
  if FLAGS.measure:
    print(json.dumps(measure()))
    return
  columns = {}
  settings = {"glibc defaults": "glibc.malloc.hugetlb=0", "huge pages only": "glibc.malloc.hugetlb=1",
              "entry points' tunables": ":".join(host_memory.malloc_tunables())}
  for name, tunables in settings.items():
    env = dict(os.environ, GLIBC_TUNABLES=tunables)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", f"--rays={FLAGS.rays}",
                          f"--steps={FLAGS.steps}"], env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    columns[name] = json.loads(out.strip().splitlines()[-1])
  header = [f"blender_fast step, {FLAGS.rays} rays", *columns]
  rows = [[measure_name, *(c[measure_name] for c in columns.values())] for measure_name in next(iter(columns.values()))]
  benchmark.print_table(header, rows)


if __name__ == "__main__":
  app.run(main)
