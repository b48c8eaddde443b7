"""The autoencoder itself: layers, activations, weights. Nothing about files or training."""

from deeprec.model.autoencoder import AutoEncoder

__all__ = ["AutoEncoder"]
