"""What the scripts call: train state, the train loop, chunked rendering, evaluation, videos, export, the
workdir, checkpoints and the command line."""
