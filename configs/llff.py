"""NeRF paper settings for a forward-facing LLFF scene (fern, flower, ...), trained and tested at factor 4
(1008x756 for fern), every 8th photo held out, rays in NDC.

Usage: python train.py --config=configs/llff.py --config.data.data_dir=PATH/nerf_llff_data/fern --workdir=DIR
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.data.dataset = "llff"
  config.data.data_dir = ""  # required: a scene folder with poses_bounds.npy and images_4/ (or images/)
  config.data.factor = 4
  config.data.white_background = False
  config.data.ndc = True
  config.model.density_noise = 1.0  # the paper's regulariser against floaters in real scenes
  config.train.max_steps = 1_000_000
  config.train.lr_delay_steps = 2500
  config.train.lr_delay_mult = 0.01
  return config
