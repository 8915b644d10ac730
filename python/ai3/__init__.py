"""ai3: per-operation algorithmic control over PyTorch networks, computed by a C core.

Two ways in:

* ``ai3.swap_operation(op_type, module, algos)`` replaces operations of a
  torch network in place; the network stays an ``nn.Module`` that trains,
  compiles, copies and pickles.
* ``ai3.convert(module, algos)`` turns a whole network into an ``ai3.Model``
  run by ai3's C graph executor (one call into C per forward pass).

Algorithms are chosen per operation instance with selectors (see
``ai3.selectors``). ``SUPPORTED_ALGORITHMS`` lists the built-in algorithms
of each operation; ``'default'`` is the library's choice, and a shared
library loaded with ``load_algorithms`` can add more (by convention one
called ``'custom'``).
"""

from . import _core, _ops  # noqa: F401 (_ops registers the torch custom ops ai3::<op>)
from ._errors import UnsupportedError
from ._ops import clear_plans
from .model import Layer, Model, convert
from .selectors import OPERATIONS
from .swap import swap_conv2d, swap_operation

__version__ = _core.__version__

# The built-in algorithms of each operation (run-time registrations excluded:
# nothing is registered yet when ai3 is imported).
SUPPORTED_ALGORITHMS = {op: list(_core.list_algorithms(op)) for op in OPERATIONS}

# The algorithm each operation gets when no selector names one.
DEFAULT_ALGOS = {op: "default" for op in OPERATIONS}


def _built_with(flag):
    return bool(getattr(_core, flag, False))


def using_cudnn():
    """Whether this build computes with cuDNN."""
    return _built_with("USING_CUDNN")


def using_cublas():
    """Whether this build computes with cuBLAS."""
    return _built_with("USING_CUBLAS")


def using_sycl():
    """Whether this build computes with SYCL."""
    return _built_with("USING_SYCL")


def using_mps_and_metal():
    """Whether this build computes with Apple's MPS and Metal."""
    return _built_with("USING_MPS_AND_METAL")


def set_num_threads(n):
    """Sets the number of threads ai3's operations use (n >= 1)."""
    _core.set_num_threads(n)


def get_num_threads():
    """The number of threads ai3's operations use."""
    return _core.get_num_threads()


def load_algorithms(path):
    """Loads a shared library of algorithms written in C and calls its
    ``ai3_init_algorithms``, which registers them by name (see ai3.h). The
    names are then valid in selectors."""
    _core.load_algorithms(path)


def list_algorithms(op_type):
    """The algorithms of an operation now, built-in then registered ones
    ('default' not included)."""
    from .selectors import op_name
    return list(_core.list_algorithms(op_name(op_type)))


__all__ = [
    "swap_operation", "swap_conv2d", "convert", "Model", "Layer", "SUPPORTED_ALGORITHMS",
    "DEFAULT_ALGOS", "using_cudnn", "using_cublas", "using_sycl", "using_mps_and_metal",
    "set_num_threads", "get_num_threads", "load_algorithms", "list_algorithms",
    "UnsupportedError", "clear_plans", "__version__",
]
