"""Executors: how a grid's cells are run (in-process, local processes, SLURM).

One module per backend (``debug``, ``local``, ``slurm``) behind the abstract
:class:`~benchmark.executors.base.Executor`; each owns its settings, its preflight checks and
how it tells whether a cell is alive. ``settings`` holds :class:`ExecutorSettings`, which
``benchmark.grid`` imports, so this package's ``__init__`` imports nothing itself: import the
submodules (``benchmark.executors.registry`` for :func:`make_executor`).
"""
