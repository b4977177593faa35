"""Fast mode for a full-resolution Blender synthetic scene (800x800): a hash-grid field with proposal sampling.

Usage: python train.py --config=configs/blender_fast.py --config.data.data_dir=PATH/nerf_synthetic/lego \\
         --workdir=DIR
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.data.data_dir = ""  # required: a scene folder of the NeRF synthetic dataset
  config.model.sampler = "proposal"
  config.model.field = "hash"
  config.model.proposal.num_samples = (64,)
  config.model.proposal.num_final_samples = 32
  config.model.proposal.max_resolution = 256
  config.model.hash.num_levels = 16
  config.model.hash.log2_table_size = 18
  config.model.hash.max_resolution = 2048
  config.loss.distortion_weight = 0.002
  config.train.max_steps = 6_000
  config.train.batch_size = 8192
  config.train.lr_init = 1e-2
  config.train.lr_final = 1e-4
  config.train.lr_delay_steps = 100
  config.train.lr_delay_mult = 0.01
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.train.weight_decay = 1e-6
  config.train.random_background = True
  config.train.checkpoint_every = 500
  config.train.keep_checkpoints = 20
  config.train.log_every = 100
  config.train.val_every = 1_000
  config.occupancy.skip_empty = True  # renders evaluate the fields only in occupied cells
  config.eval.chunk = 16384
  return config
