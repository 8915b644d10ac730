"""Exceptions raised by ai3."""


class UnsupportedError(ValueError):
    """A valid request that the chosen algorithm (or this build) cannot carry out,
    e.g. Winograd convolution with a 5x5 kernel or a CUDA tensor in a CPU-only build.
    """
