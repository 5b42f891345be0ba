"""Training: losses, EMA, LR schedule, DDP helpers, resumable state and the training loop (``bdc-occ train``)."""
