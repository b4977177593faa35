"""The built-in 100x100 lego demo, sized to train on a 2-core CPU in about 10 minutes."""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.model.depth = 4
  config.model.width = 128
  config.model.skip_layer = 2
  config.model.view_width = 64
  config.model.num_coarse_samples = 32
  config.model.num_fine_samples = 64
  config.train.max_steps = 3000
  config.train.batch_size = 1024
  config.train.lr_init = 2e-3
  config.train.lr_final = 5e-5
  config.train.precrop_steps = 300
  config.train.checkpoint_every = 500
  config.train.log_every = 50
  config.train.val_every = 1000
  config.eval.chunk = 4096
  return config
