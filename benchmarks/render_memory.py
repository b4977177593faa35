"""Peak host memory and time of rendering one full-size frame with the paper model (8x256, 64 + 128 samples).

  python benchmarks/render_memory.py                  # 800x800 lego camera, eval.chunk of configs/blender.py
  python benchmarks/render_memory.py --chunk=1024 --size=800

Memory does not depend on the parameter values, so the model is freshly initialised (no checkpoint needed).
Prints a table: frame size, chunk, seconds, rays/s and peak resident memory of the process.
"""
if __name__ == "__main__":  # first, so that the restart comes before JAX starts (as in train.py)
  from jaxnerf.runtime import host_memory
  host_memory.restart_with_malloc_tunables()

import argparse
import os
import resource
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import blender  # noqa: E402
from jaxnerf.run import rendering as render  # noqa: E402
from jaxnerf.core import rays as rays_lib  # noqa: E402
from jaxnerf.data import loaders  # noqa: E402
from jaxnerf.run import state as state_lib  # noqa: E402
from jaxnerf.nerf import model as model_lib  # noqa: E402
from jaxnerf.data import scene as scene_lib  # noqa: E402


def peak_rss_gib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main():
  config = blender.get_config()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--chunk", type=int, default=config.eval.chunk, help="rays per device call")
  parser.add_argument("--size", type=int, default=800, help="frame width and height in pixels")
  args = parser.parse_args()

  # The demo scene is lego at 100x100: its first test camera, at `size` pixels, is the benchmark's camera.
  config.data.data_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jaxnerf",
                                      "demo_data", "lego_100")
  views = loaders.load_views(config, "test", stride=10**9)
  focal = views.focal * args.size / views.width
  rays = rays_lib.image_rays(args.size, args.size, np.float32(focal), views.cam_to_world[0], xnp=np)

  model = model_lib.build_model(config)
  params = state_lib.init_params(model, jax.random.key(0))
  render_chunk = render.make_render_chunk(model, scene_lib.of_settings(config.data), config)
  before = peak_rss_gib()
  start = time.perf_counter()
  out = render.render_rays(render_chunk, {"params": params}, rays, args.chunk)
  seconds = time.perf_counter() - start
  assert out["rgb"].shape == (args.size, args.size, 3) and np.all(np.isfinite(out["rgb"]))

  print("| measure | value |\n|---|---|")
  print(f"| backend | {jax.default_backend()} ({jax.device_count()} device(s)) |")
  print("| model | 8x256, 64 coarse + 128 fine samples |")
  print(f"| frame | {args.size}x{args.size} ({args.size ** 2} rays) |")
  print(f"| chunk | {args.chunk} rays |")
  print(f"| render time | {seconds:.1f} s (compilation included) |")
  print(f"| render rays/s | {args.size ** 2 / seconds:.0f} |")
  print(f"| peak host memory before rendering | {before:.2f} GiB |")
  print(f"| peak host memory (RSS) | {peak_rss_gib():.2f} GiB |")


if __name__ == "__main__":
  main()
