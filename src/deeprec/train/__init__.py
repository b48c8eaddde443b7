"""Training: configuration, loss, the trainer loop, run directories and checkpoints."""
