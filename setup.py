"""Builds the Cython extensions of dlkernels; all metadata is in pyproject.toml.

Release builds compile with bounds checks off.  Set ``DLKERNELS_CYTHON_DEBUG=1``
to build with ``boundscheck=True, wraparound=True`` (and without -O3), e.g.::

    DLKERNELS_CYTHON_DEBUG=1 pip install -e . --no-build-isolation
"""
import os
import sys
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

DEBUG = os.environ.get("DLKERNELS_CYTHON_DEBUG", "0") not in ("", "0", "false", "False")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
}

if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
elif sys.platform == "darwin":
    # Apple clang has no OpenMP by default: the prange loops run serially.
    compile_args, link_args = ["-O3"], []
else:
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
    # -ffp-contract=off: no a*b+c -> fma fusion in any ISA clone, so the Cython
    # kernels round exactly as the Numba ones (LLVM does not contract either).
    # -fno-trapping-math: lets GCC turn the kernels' FP selects into vector
    # blends (no value changes; the kernels never rely on FP traps).
    compile_args += ["-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    link_args = ["-fopenmp"]

# DLKERNELS_BUILD_ONLY=rbm,gan builds only those modules (for quick rebuilds
# while one family is being edited); unset builds every .pyx in the folder.
ONLY = {m for m in os.environ.get("DLKERNELS_BUILD_ONLY", "").split(",") if m}

extensions = []
for pyx in sorted(glob(os.path.join("dlkernels", "engine", "cython", "*.pyx"))):
    name = pyx[:-4].replace(os.sep, ".")
    if ONLY and name.rsplit(".", 1)[1] not in ONLY:
        continue
    extensions.append(
        Extension(
            name,
            [pyx],
            include_dirs=[np.get_include(), os.path.join("dlkernels", "engine", "cython")],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    )

# The modules are independent: Cython translates them, and the C compiler
# builds them, in parallel (one job per CPU unless --parallel / -j says otherwise).
NJOBS = max(1, min(len(extensions), os.cpu_count() or 1))


class build_ext(_build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = NJOBS


setup(
    cmdclass={"build_ext": build_ext},
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        include_path=["."],
        force=DEBUG,
        nthreads=NJOBS if NJOBS > 1 else 0,
    ),
)
