"""Bernoulli RBM kernels (Numba backend): the family module.

Same names, arguments and semantics as ``dlkernels.engine.cython.rbm``; no
input validation here (that is ``dlkernels.bindings.rbm``' job).  All arrays
are C-contiguous and share one float dtype (float32 or float64).

This module is the one importable engine module of the family; the kernels
live in private files along their seams and are re-exported here:

* ``_rbm_layers``: tiled-GEMM and binary layers, energies, conditionals,
  samplers (``OP_*``: the ``op`` codes of the layer kernels);
* ``_rbm_chains``: block Gibbs chains (``gibbs_chains``);
* ``_rbm_cd``: the CD-k / PCD minibatch step (``cd_step``; ``MODE_*``) and
  ``cd_minibatches``, a run of minibatches of an epoch in one call (the
  estimator's ``fit`` loop, bit-identical to one ``cd_step`` per minibatch);
* ``_rbm_single_site``: single-site Gibbs (``SCAN_*``: its ``mode`` codes);
* ``_rbm_ais``: annealed importance sampling;
* ``_rbm_pl``: pseudo-likelihood;
* ``_rbm_pt``: parallel tempering.

Their Cython twins are the ``_rbm_*.pxi`` files included by ``rbm.pyx``.

Start-up (compile time).  Numba compiles a separate specialization of a
callee -- and of everything it calls -- for each literal argument value
(a Python ``int``/``bool`` constant such as ``OP_SAMPLE`` or ``False`` is typed
as a literal) and, inside a ``prange`` body, once for the uint64 loop index
and once for int64.  Calls between kernels therefore pass ``np.int64(...)`` /
``np.bool_(...)`` values and ``np.int64(t)`` loop indices, and the uniform
fill of a row is chosen by dtype at typing time (an ``overload``), so a call
compiles each helper once for its dtype only.

Conventions: v (rows, m), h (rows, n), W (m, n), a (m,), b (n,).

GEMM.  Every matrix product calls the ``?gemm`` of ``scipy.linalg.cython_blas``
(the BLAS Numba's own ``np.dot`` uses) through ``_blas.gemm_at``, with exactly the
arguments the Cython backend passes, so both backends see bit-identical
products; it also accumulates (beta = 1), which lets ``cd_step`` add the
gradient straight into W without an (m, n) temporary.

Layers.  ``_layer`` computes a layer's activations tile by tile (TILE_R rows
x equal column tiles of at most TILE_C units, fixed by the sizes only): one
single-threaded gemm per tile, then bias + sigmoid (+ Bernoulli draw) on the
tile while it is in cache; tiles run in parallel (prange) when the layer is
big enough (PAR_MIN_WORK), otherwise on the calling thread.  The BLAS must
be single-threaded meanwhile (``dlkernels.bindings.rbm.blas_single_threaded``).
Neither the tiling nor the thread count changes any result.

Binary layers.  Where the input states are 0/1 -- the chains of
``gibbs_chains`` and ``cd_step``, and the data of ``cd_step`` when every value
is 0 or 1 -- a product x W is a sum of the rows of W of the units that are on:
``_bin_layer`` lists them per row and adds those rows in a fixed order
(``_bin_acc``: adds only, no FMA, no BLAS, the same operations in both
backends and for any thread count), then runs the fused pass on the row.  At
density d it does d / 2 of a GEMM's flops, but it streams W from L2 (about 22
G adds/s per core here) where a large GEMM reuses W from registers, so it wins
over a big GEMM only by about 1 / (2.5 d) and wins most for small batches.
``gibbs_chains`` samples both layers this way (h -> v with a transposed copy
of W made once per call) unless ``_prefer_bin`` sees a dense layer for the
caller's table ``bin_max`` (per row class, the largest density in per mille
that takes the binary path; ``dlkernels.rbm.path_thresholds`` measures it per
machine or gives the default rule ``BIN_DEFAULT_SMALL`` / ``_LARGE``);
``cd_step`` computes v W for the chains (and binary
data) this way and the gradient's v^T p as a scatter-add of the rows of p into
the rows of W of the on-units (one pass over W); h W^T (a per-call transpose
of W costs more than it saves) and grey data stay on the tiled GEMM.  The
probabilities differ from the GEMM path's by rounding only (tests bound it).

Random numbers.  Row/chain ``s`` of a call draws from stream ``s`` of the
call's base counter ``ctr`` (counter ``ctr + s * 2**128``).  Each layer draw
of a row starts on a fresh Philox block: a layer of n units uses
``ceil(n / 8)`` blocks, in both dtypes (uniform i = float32 uniform i of the
stream, ``(x >> 8) * 2**-24`` of the 32-bit half-word x, low half first; a
float64 layer holds the same values exactly).  Within a call, the draws of a
row are laid out one after another in the order they happen (see each
kernel).  A unit is on when ``u < p`` (for float32 this is exactly the
integer test ``(x >> 8) < ceil(p * 2**24)`` on the 32-bit word x).  So a
float32 and a float64 model of one seed compare the same uniforms with their
probabilities and make the same random decisions wherever the two
probabilities fall on the same side of the uniform (they differ by rounding);
the price is a resolution of 2**-24 for p in float64 (a unit with
0 < p < 2**-24 is on with probability 2**-24).  Single-site Gibbs compares a
53-bit float64 uniform with a float64 probability in both dtypes, parallel
tempering half-word uniforms in both.

Sigmoid and softplus come from the shared ``_fastmath`` module (the same
IEEE operations in the same order as the Cython backend's ``dlk_fastmath.h``):
``sigmoid32`` (``1 / (1 + exp(-x))`` with a vectorizable polynomial exp),
``sigmoid64`` (libm exp), ``softplus32/64`` (``max(x, 0) + log1p(exp(-|x|))``,
libm); their error bounds are tabled there.  Kernels are compiled with
``error_model="numpy"`` so that these loops vectorize.
"""


from ._rbm_layers import *  # noqa: E402,F401,F403
from ._rbm_layers import __all__ as _layers_all  # noqa: E402
from ._rbm_chains import *  # noqa: E402,F401,F403
from ._rbm_chains import __all__ as _chains_all  # noqa: E402
from ._rbm_cd import *  # noqa: E402,F401,F403
from ._rbm_cd import __all__ as _cd_all  # noqa: E402
from ._rbm_single_site import *  # noqa: E402,F401,F403
from ._rbm_single_site import __all__ as _ss_all  # noqa: E402
from ._rbm_ais import *  # noqa: E402,F401,F403
from ._rbm_ais import __all__ as _ais_all  # noqa: E402
from ._rbm_pl import *  # noqa: E402,F401,F403
from ._rbm_pl import __all__ as _pl_all  # noqa: E402

# parallel tempering (its own file; part of this family module)
from ._rbm_pt import *  # noqa: E402,F401,F403
from ._rbm_pt import __all__ as _pt_all  # noqa: E402

__all__ = [*_layers_all, *_chains_all, *_cd_all, *_ss_all, *_ais_all, *_pl_all,
           *(x for x in _pt_all if x not in _layers_all)]
