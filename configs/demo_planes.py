"""K-Planes on the built-in 100x100 lego demo: fast mode (one proposal level, occupancy grid, Instant-NGP's
optimiser settings, see demo_fast.py) with the factorised planes field instead of the hash grid.
"""
from jaxnerf.config import fast_config


def get_config():
  config = fast_config()
  config.model.field = "planes"
  config.model.planes.resolutions = (64, 128, 256)
  config.model.planes.features = 16
  config.train.max_steps = 2_500
  config.train.batch_size = 1024
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 0
  config.eval.chunk = 8192
  return config
