"""Process plumbing: errors, Ctrl-C and preemption, multi-process start-up, host memory, device sharding."""
