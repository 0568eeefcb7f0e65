"""Counter-based random numbers (Philox4x64-10, numpy-compatible); see
:mod:`dlkernels.bindings.rng` for the contract."""
from .bindings.rng import (Streams, advance, as_streams, counter, make_key, numpy_generator,  # noqa: F401
                           raw, uniform, uniform_streams)

__all__ = ["make_key", "counter", "advance", "raw", "uniform", "uniform_streams",
           "numpy_generator", "Streams", "as_streams"]
