"""Selection benchmarks (``make bench``): time and peak memory of every strategy on synthetic pools.

Not part of the installed package: run from the repository root as ``python -m perf.selection``.
:mod:`perf.synthetic` makes the pools, :mod:`perf.naive` holds the plain reference
implementations the speed-ups are measured against, :mod:`perf.selection` is the driver.
"""
