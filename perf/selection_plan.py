"""What the selection benchmark measures: the strategies in table order, which of them are
measured at one size only, which are aliases of another, and the naive and official-manner
references each is compared with. Read by :mod:`perf.selection` (the runner) and
:mod:`perf.selection_table` (the document), so neither imports the other."""

#: Every strategy the benchmark measures, in table order.
STRATEGIES = (
    "random",
    "margin",
    "least_confidence",
    "entropy",
    "badge",
    "coreset",
    "coreset_self",
    "activeft_self",
    "activeft_al",
    "typiclust",
    "probcover",
)

#: Strategies whose cost is quadratic in the pool, measured at :data:`QUADRATIC_SIZE` only.
QUADRATIC = {
    "probcover": "its δ-ball graph and purity pass are quadratic in the pool",
}
QUADRATIC_SIZE = "20k"

#: Strategies that, on these pools, run the same kernel on the same tensor as another one: they
#: differ only in reading ``embeddings`` instead of ``features`` (or the reverse), and the
#: benchmark passes the same tensor as both. Their figures are the other's unless
#: ``--measure-aliases`` (which only spends time: the selections are identical).
ALIASES = {"coreset_self": "coreset", "activeft_al": "activeft_self"}

#: The naive reference each strategy is compared with, and the reference written in the
#: official code's manner (:func:`perf.naive.running_min_k_center`), at :data:`NAIVE_SIZE` only.
NAIVE_FOR = {"badge": "badge", "coreset": "kcenter", "coreset_self": "kcenter"}
OFFICIAL_FOR = {"coreset": "kcenter_running_min", "coreset_self": "kcenter_running_min"}
NAIVE_SIZE = "20k"
NAIVE_NAMES = {
    "badge": "materialised N×(C·D) embeddings, full N×N distance matrix, k-means++",
    "kcenter": "(|L| + picks)×|U| distance matrix rebuilt at every pick",
    "kcenter_running_min": "|L|×|U| matrix once, then a running minimum lowered by each pick's "
    "distances (the official `acquire_new_sample`'s way)",
}
