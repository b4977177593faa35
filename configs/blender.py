"""NeRF paper settings for a full-resolution Blender synthetic scene (800x800).

Usage: python train.py --config=configs/blender.py --config.data.data_dir=PATH/nerf_synthetic/lego --workdir=DIR
"""
from jaxnerf.config import base_config


def get_config():
  config = base_config()
  config.data.data_dir = ""  # required: a scene folder of the NeRF synthetic dataset
  return config
