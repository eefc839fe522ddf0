"""The grid the harness benchmark (:mod:`perf.harness_scale`) writes its fake runs into: Table 2's
shape (random, five strategies, four pipelines, full data; :file:`experiments/table2.yaml`)
on MNIST-5k entries that differ only in their split seed, so that the grid validates and passes
the preflight on any machine (MNIST-5k ships with the package) at any size.

Cells per dataset and seed: one random baseline, one full-data cell and one per other strategy
and pipeline; ``datasets x seeds`` scales it (5 x 3 = 330 cells, Table 2's size).
"""

from __future__ import annotations

from pathlib import Path

STRATEGIES = ("random", "margin", "least_confidence", "entropy", "badge", "coreset")
PIPELINES = (
    "{pipeline: standard, train_method: ft}",
    "{pipeline: standard, train_method: lpft}",
    "{pipeline: svpp, train_method: ft}",
    "{pipeline: asvp, train_method: auto}",
)
BUDGETS = tuple(range(20, 201, 20))  # ten rounds, like Table 2's CIFAR-10 entry

TEMPLATE = """# Written by perf.harness_grid; perf.harness_load logs fake runs into this grid.
name: {name}
datasets:
{datasets}
backbone: efficientnet_lite0
transform: {{size: 48, interpolation: bilinear, augment: none}}
seeds: {seeds}
strategies: [{strategies}]
full_data: true
pipelines:
{pipelines}
baseline: {{train_method: ft}}
finetune: {{epochs: 10, batch_size: 16, lr_backbone: 0.003, lr_head: 0.03, milestones: [7, 9]}}
linear_probe: {{epochs: 50, lr: 0.5}}
proxy: {{epochs: 50, batch_size: 256, lr: 0.1}}
trigger: {{rule: logme, fraction: 0.9, max_updates: 1}}
compute: {{threads: 1, deterministic: false}}
costs:
  label_price: 0.05
  reviews_per_label: 1
  device_hour: {{cpu: 0.10, cuda: 3.06}}
  note: "Illustrative prices (harness benchmark)."
executor: {{kind: local}}
feature_store: {root}/features
state_dir: {root}/state
"""

DATASET = """  - name: mnist5k
    label: mnist-s{split}
    options: {{test_size: 500, pool_size: 2000, split_seed: {split}}}
    budgets: [{budgets}]"""


def cells_per_grid(datasets: int, seeds: int, strategies: int = len(STRATEGIES)) -> int:
    """How many cells :func:`write_grid` makes: per dataset and seed, the random baseline, the
    full-data cell and each other strategy under each pipeline."""
    return datasets * seeds * (2 + (strategies - 1) * len(PIPELINES))


def write_grid(
    root: Path, datasets: int, seeds: int, strategies: int = len(STRATEGIES), name: str = "scale"
) -> Path:
    """Write the grid file ``<root>/<name>.yaml`` (features and state under ``root``) with
    ``datasets`` MNIST-5k entries, seeds ``0 .. seeds-1`` and the first ``strategies`` of
    :data:`STRATEGIES` (random always among them); return its path."""
    if not 1 <= strategies <= len(STRATEGIES):
        raise ValueError(f"strategies={strategies}: expected 1..{len(STRATEGIES)}")
    if datasets < 1 or seeds < 1:
        raise ValueError(f"datasets={datasets}, seeds={seeds}: expected at least 1 of each")
    root = Path(root).resolve()
    budgets = ", ".join(map(str, BUDGETS))
    text = TEMPLATE.format(
        name=name,
        datasets="\n".join(DATASET.format(split=k, budgets=budgets) for k in range(datasets)),
        seeds=list(range(seeds)),
        strategies=", ".join(STRATEGIES[:strategies]),
        pipelines="\n".join(f"  - {p}" for p in PIPELINES),
        root=root,
    )
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path
