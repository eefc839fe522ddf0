"""Speed benchmarks (``make bench``): how fast the CLI answers, and the time and peak memory of
every strategy, of the proxy round and of fine-tuning on synthetic data.

Not part of the installed package: run from the repository root as ``python -m perf.NAME``.
:mod:`perf.cli_latency` times ``asvp-bench --help`` and ``validate``; :mod:`perf.selection` is
the selection driver, with the pools of :mod:`perf.synthetic` and the plain reference
implementations of :mod:`perf.naive` the speed-ups are measured against;
:mod:`perf.proxy_round` and :mod:`perf.finetune` time a proxy round and fine-tuning. Each writes
its own section of ``docs/benchmarks.md`` (:mod:`perf.document`).
"""
