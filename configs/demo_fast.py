"""Fast mode on the built-in 100x100 lego demo: a hash-grid field with proposal sampling, for a 2-core CPU.

A multiresolution hash encoding with small MLPs (Instant-NGP) evaluated at few samples per ray, placed by one
density-only proposal level (mip-NeRF 360), and trained with Instant-NGP's optimiser settings.
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.model.sampler = "proposal"
  config.model.field = "hash"
  config.model.proposal.num_samples = (64,)
  config.model.proposal.num_final_samples = 32
  config.model.proposal.max_resolution = 128
  config.model.hash.num_levels = 12
  config.model.hash.log2_table_size = 17
  config.model.hash.max_resolution = 512
  config.loss.distortion_weight = 0.002
  config.train.max_steps = 2_500
  config.train.batch_size = 1024
  config.train.lr_init = 1e-2
  config.train.lr_final = 1e-4
  config.train.lr_delay_steps = 100
  config.train.lr_delay_mult = 0.01
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.train.weight_decay = 1e-6
  config.train.random_background = True
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 0
  config.occupancy.skip_empty = True  # renders evaluate the fields only in occupied cells
  config.eval.chunk = 8192
  return config
