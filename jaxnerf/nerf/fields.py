"""The registry of fields with colour: config.model.field names one, whose settings are config.model.<name>.

A field type is a module with `default_config()` (its config subgroup, which the schema in config.py takes from
here) and `build(config, scene_box)` (the Flax module). A field module maps `(points [..., num_samples, 3],
viewdirs [..., 3], appearance)` to `(rgb [..., num_samples, 3], raw_density [..., num_samples])` (appearance: None,
or [..., e] per-photo codes into its colour branch, layers.per_ray_color_input), has a `density_activation`
and says whether it is empty outside the scene box (`empty_outside_box`, which the occupancy grid reads). Adding
a field is its own module and one line here.
"""
from jaxnerf.nerf import hash_field
from jaxnerf.nerf import mlp_field
from jaxnerf.nerf import planes_field

FIELDS = {
    "mlp": mlp_field,  # the NeRF paper's MLP
    "hash": hash_field,  # Instant-NGP's hash grid
    "planes": planes_field,  # K-Planes' factorised feature planes
}
