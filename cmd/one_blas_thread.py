"""Loads numpy with one BLAS thread, imported by mem_parser before anything that imports
numpy. numpy's OpenBLAS starts a thread per core as it loads, each spinning a while for
work that a report never gives it (no linear algebra): a quarter of the CPU of a small
report. The environment is left as it was, for the programs mem_parser runs."""

import os
import sys

if "numpy" not in sys.modules and "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]
