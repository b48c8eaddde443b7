"""Training: configuration, loss, the trainer loop, checkpoints and distributed training.

Run folders (train/resume into a directory, load its model) live above the estimator, in
`deeprec.runs`.
"""
