"""jaxnerf: Neural Radiance Fields in JAX.

The pipeline, one module per stage: rays -> sampling -> encoding -> model -> compositing -> metrics, with data
loading (`jaxnerf.data`), rendering (`render`), training (`train_lib`) and evaluation (`eval_lib`) on top.
"""
import os

__version__ = "0.1.0"

DEMO_SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_data", "lego_100")
