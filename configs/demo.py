"""The built-in 100x100 lego demo, sized to train on a 2-core CPU in under 10 minutes.

Measured on a 2-core CPU (see README): small batches of rays and few samples per ray give the most optimizer
steps per second, which matters more than network size within this budget.
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.model.mlp.depth = 4
  config.model.mlp.width = 128
  config.model.mlp.skip_layer = 2
  config.model.mlp.view_width = 64
  config.model.hierarchical.num_coarse_samples = 16
  config.model.hierarchical.num_fine_samples = 32
  config.train.max_steps = 9_000
  config.train.batch_size = 256
  config.train.lr_init = 5e-3
  config.train.lr_final = 5e-5
  config.train.precrop_steps = 500
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 2500
  config.eval.chunk = 4096
  return config
