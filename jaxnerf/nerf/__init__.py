"""The differentiable model: encodings, layers, fields, samplers, the occupancy grid, the renderer, losses."""
