"""Selection benchmarks (``make bench``): time and peak memory of every strategy on synthetic pools.

Not part of the installed package: run from the repository root as ``python -m bench.selection``.
:mod:`bench.synthetic` makes the pools, :mod:`bench.naive` holds the plain reference
implementations the speed-ups are measured against, :mod:`bench.selection` is the driver.
"""
