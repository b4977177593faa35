"""SIREN on the built-in 100x100 lego demo: configs/demo.py's model and schedule with sine layers (Sitzmann et
al. 2020) in the MLP's trunk and colour branch, fed the raw coordinates instead of the positional encoding.

SIREN's w0 = 30 sets the frequencies the first layer represents, as the encoding's degrees do for ReLU layers;
sine layers want a lower learning rate than demo.py's.
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.model.mlp.depth = 4
  config.model.mlp.width = 128
  config.model.mlp.skip_layer = 2
  config.model.mlp.view_width = 64
  config.model.mlp.activation = "siren"
  config.model.mlp.color_activation = "siren"
  config.model.mlp.siren_w0 = 30.0
  config.model.mlp.position_max_deg = 0  # raw coordinates
  config.model.hierarchical.num_coarse_samples = 16
  config.model.hierarchical.num_fine_samples = 32
  config.train.max_steps = 9_000
  config.train.batch_size = 256
  config.train.lr_init = 5e-4
  config.train.lr_final = 5e-5
  config.train.precrop_steps = 500
  config.train.checkpoint_every = 1000
  config.train.log_every = 100
  config.train.val_every = 2500
  config.eval.chunk = 4096
  return config
