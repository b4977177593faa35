"""jaxnerf: Neural Radiance Fields in JAX.

The package in layers, each importing only those before it (tests/test_layers.py):
  core/     pure math: rays and lens models, poses and camera paths, cones, contraction, step functions, compositing
  nerf/     the differentiable model: encodings, layers, fields, samplers, the occupancy grid, the renderer, losses
  data/     photos, posed views, ray batches, one module per dataset format, and the scene description
  metrics/  PSNR, SSIM and LPIPS
  config.py the one config schema
  runtime/  process plumbing: Ctrl-C and preemption, multi-process start-up, host memory, device sharding
  run/      what the scripts call: train state, the train loop, chunked rendering, evaluation, videos, export
Below them all: errors.py (the user's mistakes) and storage.py (local files and gs:// URLs alike, for every file
read or written).
"""
import os

__version__ = "0.1.0"

DEMO_SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data", "lego_100")
