"""Hand-written GPU kernels for inference; optional (they need Triton and a CUDA device, see ``available()``)."""
