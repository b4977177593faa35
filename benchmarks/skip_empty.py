"""Rendering a trained run with and without skipping empty space (a benchmark, not a test).

  python benchmarks/skip_empty.py --config=configs/blender_fast.py --config.data.data_dir=PATH/lego \\
      --workdir=runs/lego_fast [--views=1] [--repeats=3]

Renders the first --views test views (every config.eval.stride-th) of the run's latest checkpoint at full
resolution (the first one once more before timing, to compile) --repeats times each, with the fields evaluated
at every sample and with the occupancy grid (config.occupancy.skip_empty); prints one table: median seconds per frame, rays/s, PSNR and SSIM
against the photos, the occupied fraction of the grid, field calls per frame (one per level and chunk when no
level overflows occupancy.skip_budget), and the largest difference between the two renders.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts (as in train.py)
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from jaxnerf.run import cli  # noqa: E402
from jaxnerf.metrics import quality as metrics_lib  # noqa: E402
from jaxnerf.run import rendering as render  # noqa: E402
from jaxnerf.data import loaders  # noqa: E402
from jaxnerf.run import state as state_lib  # noqa: E402
from jaxnerf.run import workdir as workdir_lib  # noqa: E402

FLAGS = flags.FLAGS
cli.define_flags()
flags.DEFINE_integer("views", 1, "test views to render")
flags.DEFINE_integer("repeats", 3, "timed renders of each view per mode (the median is reported)")


def measure(config, workdir):
  views = loaders.load_views(config, config.eval.split, stride=config.eval.stride)
  scene = workdir_lib.run_scene(workdir, loaders.scene_of(config, views))
  model, state = state_lib.restore_trained(config, workdir, scene)
  render_chunk = render.make_render_chunk(model, scene, config)
  occupied = render.occupied_cells(state.density_grid, config, scene)
  modes = {"every sample": {"params": state.params}, "occupied cells only": {"params": state.params,
                                                                             "occupied": occupied}}
  results = {name: {"seconds": [], "psnr": [], "ssim": [], "calls": 0, "images": []} for name in modes}
  for i in range(min(FLAGS.views, len(views))):
    rays = views.image_rays(i)
    for name, variables in modes.items():
      if i == 0:  # compile, warm caches
        render.render_rays(render_chunk, variables, rays, config.eval.chunk)
      for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        out = render.render_rays(render_chunk, variables, rays, config.eval.chunk)
        results[name]["seconds"].append(time.perf_counter() - start)
      image = np.clip(out["rgb"], 0.0, 1.0)
      results[name]["psnr"].append(float(metrics_lib.psnr_from_mse(np.mean((image - views.images[i]) ** 2))))
      results[name]["ssim"].append(float(metrics_lib.ssim(image, views.images[i])))
      results[name]["calls"] = int(out.get("field_calls", 0))
      results[name]["images"].append(image)
  height, width = views.images[0].shape[:2]
  plain, skipping = results["every sample"], results["occupied cells only"]
  diff = max(float(np.abs(a - b).max()) for a, b in zip(plain["images"], skipping["images"]))
  rows = [("seconds per frame (median)", lambda r: f"{np.median(r['seconds']):.2f}"),
          ("rays/s", lambda r: f"{height * width / np.median(r['seconds']):.0f}"),
          ("PSNR (mean)", lambda r: f"{np.mean(r['psnr']):.3f}"),
          ("SSIM (mean)", lambda r: f"{np.mean(r['ssim']):.4f}"),
          ("field calls (last frame)", lambda r: str(r["calls"]) if r["calls"] else "-")]
  print(f"{workdir} step {int(state.step)}: {min(FLAGS.views, len(views))} {config.eval.split} view(s) of "
        f"{width}x{height}, chunk {config.eval.chunk}, occupancy grid {occupied.shape[0]}^3 with "
        f"{float(np.mean(np.asarray(occupied))):.1%} of cells occupied, skip_budget {config.occupancy.skip_budget}")
  print(f"{'':28s} {'every sample':>14s} {'occupied only':>14s}")
  for label, cell in rows:
    print(f"{label:28s} {cell(plain):>14s} {cell(skipping):>14s}")
  print(f"speed-up {np.median(plain['seconds']) / np.median(skipping['seconds']):.2f}x; "
        f"largest colour difference {diff:.4f}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cli.quiet_library_logs()
  cli.run_reporting_user_errors(measure, FLAGS.config, cli.workdir(FLAGS))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
