"""mip-NeRF on the built-in 100x100 lego demo: configs/demo.py's MLP and schedule with mip-NeRF's cones, conical
frustum Gaussians and integrated positional encoding, one MLP for both levels (Barron et al. 2021).

The same field evaluations per ray as demo.py (64: 32 coarse, 32 fine intervals), from one shared MLP.
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.model.sampler = "mip"
  config.model.mip.num_coarse_samples = 32
  config.model.mip.num_fine_samples = 32
  config.model.mlp.depth = 4
  config.model.mlp.width = 128
  config.model.mlp.skip_layer = 2
  config.model.mlp.view_width = 64
  config.model.mlp.position_max_deg = 16  # the integrated encoding fades frequencies finer than each frustum
  config.model.mlp.density_activation = "softplus"
  config.loss.coarse_rgb_weight = 0.1
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
