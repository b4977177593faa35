"""Fast mode on the built-in 100x100 lego demo: a hash-grid field with proposal sampling, for a 2-core CPU.

A multiresolution hash encoding with small MLPs (Instant-NGP) evaluated at few samples per ray, placed by one
density-only proposal level (mip-NeRF 360), and trained with Instant-NGP's optimiser settings.
"""
from jaxnerf.config import fast_config


def get_config():
  config = fast_config()
  config.model.hash.num_levels = 12
  config.model.hash.log2_table_size = 17
  config.model.hash.max_resolution = 512
  config.train.max_steps = 2_500
  config.train.batch_size = 1024
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 0
  config.eval.chunk = 8192
  return config
