"""Pure math of rays and space: cameras and lens models, poses and camera paths, cones, contraction,
step functions over ray intervals, compositing."""
