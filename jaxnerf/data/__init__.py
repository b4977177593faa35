"""Scene loaders and ray batching."""
