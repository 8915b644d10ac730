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


def backends():
    """What this build of ai3 computes on, here: ``{'cpu': {...}, 'cuda': {...}}``.

    ``cuda['built']`` says whether this build has the CUDA backend,
    ``cuda['available']`` whether it loads in this process (it is loaded on
    this call if it was not), ``cuda['devices']`` how many GPUs torch sees,
    and ``cuda['detail']`` what it computes with (CUDA runtime, cuDNN and
    cuBLAS versions) or why it is not available. Calling this needs no GPU.
    """
    import os
    import torch
    built = os.path.exists(os.path.join(os.path.dirname(_core.__file__), "libai3_cuda.so"))
    available, detail = _ops.cuda_backend() if built else (
        False, "this build of ai3 has no CUDA backend (built without a CUDA compiler, cuDNN "
               "or cuBLAS)")
    return {
        "cpu": {"available": True, "threads": _core.get_num_threads()},
        "cuda": {"built": built, "available": available,
                 "devices": torch.cuda.device_count() if available else 0, "detail": detail},
    }


def _computes_on_gpu():
    cuda = backends()["cuda"]
    return cuda["available"] and cuda["devices"] > 0


def using_cudnn():
    """Whether ai3 computes CUDA tensors' convolutions with cuDNN here: its
    CUDA backend is built and loads, and torch sees a GPU."""
    return _computes_on_gpu()


def using_cublas():
    """Whether ai3 computes CUDA tensors' linear layers with cuBLAS here (as
    :func:`using_cudnn`)."""
    return _computes_on_gpu()


def using_sycl():
    """Whether this build computes with SYCL (it never does: ai3's GPU backend
    is CUDA)."""
    return False


def using_mps_and_metal():
    """Whether this build computes with Apple's MPS and Metal (it never does)."""
    return False


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


def list_algorithms(op_type, device="cpu"):
    """The algorithms of an operation on a device ('cpu' or 'cuda') now,
    built-in then registered ones ('default' not included). CUDA lists
    cuDNN's convolution algorithms too, and is empty where the CUDA backend
    is not available (see :func:`backends`)."""
    from .selectors import op_name
    return list(_core.list_algorithms(op_name(op_type), str(device).split(":")[0]))


__all__ = [
    "swap_operation", "swap_conv2d", "convert", "Model", "Layer", "SUPPORTED_ALGORITHMS",
    "DEFAULT_ALGOS", "using_cudnn", "using_cublas", "using_sycl", "using_mps_and_metal",
    "set_num_threads", "get_num_threads", "load_algorithms", "list_algorithms", "backends",
    "UnsupportedError", "clear_plans", "__version__",
]
