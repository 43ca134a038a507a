"""Training engine: configuration (profiles), schedule, DDP plumbing, checkpoints, the loop."""
