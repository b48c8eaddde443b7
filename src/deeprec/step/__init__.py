"""One optimisation step of the autoencoder on a batch of users' (or items') ratings.

- `reference`: the paper's procedure as NVIDIA's code runs it (dense, autograd);
- `fast`: the same loss and gradients written out by hand over sparse batches, with the
  output-layer and first-layer strategies chosen by `planner`, products in `sparse_ops`;
- `graph`: the fast step captured in CUDA graphs over batches built on the GPU.
Kernels the fast steps call (oneDNN products, fused loops, vectorised dropout draws) are in
`deeprec.kernels`, each with a plain PyTorch fallback.
"""
