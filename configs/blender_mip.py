"""mip-NeRF's settings for a full-resolution Blender synthetic scene (800x800): cones through the pixels, conical
frustum Gaussians with the integrated positional encoding (degrees 0 to 15), 128 stratified then 128 resampled
intervals from one shared 8x256 MLP, coarse loss weight 0.1, softplus density, a 2500-step warm-up of the
learning rate (Barron et al. 2021).

Usage: python train.py --config=configs/blender_mip.py --config.data.data_dir=PATH/nerf_synthetic/lego \\
         --workdir=DIR
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.data.data_dir = ""  # required: a scene folder of the NeRF synthetic dataset
  config.model.sampler = "mip"
  config.model.mip.num_coarse_samples = 128
  config.model.mip.num_fine_samples = 128
  config.model.mip.resample_padding = 0.01
  config.model.mlp.position_max_deg = 16
  config.model.mlp.density_activation = "softplus"
  config.loss.coarse_rgb_weight = 0.1
  config.train.max_steps = 1_000_000
  config.train.lr_init = 5e-4
  config.train.lr_final = 5e-6
  config.train.lr_delay_steps = 2500
  config.train.lr_delay_mult = 0.01
  return config
