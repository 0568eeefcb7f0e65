# cython: language_level=3
"""Thread control for the Cython backend's OpenMP loops."""
cimport openmp


def set_num_threads(int n):
    """Number of OpenMP threads for subsequent prange loops of the calling thread."""
    openmp.omp_set_num_threads(n)


def get_num_threads():
    """Threads an OpenMP parallel region of the calling thread would use."""
    return openmp.omp_get_max_threads()


def get_num_procs():
    return openmp.omp_get_num_procs()
