"""K-Planes on the built-in 100x100 lego demo: fast mode (one proposal level, occupancy grid, Instant-NGP's
optimiser settings, see demo_fast.py) with the factorised planes field instead of the hash grid.

Measured on a 2-core CPU, 2500 steps: 31.2 dB in about 5:50 (demo_fast's hash grid: 31.3 dB in 5:20); 16 features
per plane gave 30.3 dB in 4:25. Scales 64, 128 and 256 suffice for 100x100 views (256 vertices across the box are
about 2.5 per pixel's footprint); a scale of 512 (not tried) would quadruple the planes' parameters for detail that
the views do not show.
"""
from jaxnerf.config import fast_config


def get_config():
  config = fast_config()
  config.model.field = "planes"
  config.model.planes.resolutions = (64, 128, 256)
  config.model.planes.features = 32
  config.train.max_steps = 2_500
  config.train.batch_size = 1024
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 0
  config.eval.chunk = 8192
  return config
