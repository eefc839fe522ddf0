"""Synthetic selection pools: a seeded Gaussian mixture with softmax outputs of a fixed linear map.

A pool of ``rows`` fp32 feature vectors of dimension ``dim`` (the first ``labelled`` rows are the
labelled set, the rest the unlabelled candidates) stands in for a backbone's features, and
``probs`` for a selecting model's softmax outputs on the candidates. Why this shape:

* features: class centres ``N(0, I)``, each class with its own noise level (standard deviation
  drawn uniformly in ``[0.5, 1.5)``), classes drawn uniformly. Clustered, unlike plain noise,
  so that k-means, k-center and coverage strategies meet the structure they are built for;
* probs: ``softmax(x W / T)`` for a fixed random ``dim x classes`` map ``W`` and a temperature
  ``T`` calibrated on the first candidates so that the mean top-1 probability is
  :data:`TARGET_CONFIDENCE`: a realistic spread, neither one-hot nor uniform (BADGE's gradient
  embeddings ``p - onehot(argmax p)`` are then neither zero nor all alike);
* the same tensor serves as ``embeddings`` and ``features`` (benchmarks pass the same object,
  never a copy), and the labelled rows and the candidates are two views of one ``rows x dim``
  tensor: no ``rows x dim`` concatenation, no copy;
* everything is generated in chunks of :data:`CHUNK_ROWS` rows into preallocated tensors, so that
  the peak memory of generation is the size of the inputs plus one chunk.

Generation is on the CPU with a seeded ``torch.Generator`` whatever the target device (chunks are
copied to the device), so the same spec gives the same features on every machine and device.
A pool can be saved to a directory (``.npy`` files) and loaded back in chunks (:func:`load_pool`):
the benchmark driver generates each size once and every measurement process loads it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asvp.strategies import Representation, SelectionRequest

__all__ = [
    "CHUNK_ROWS",
    "SIZES",
    "TARGET_CONFIDENCE",
    "PoolSpec",
    "SyntheticPool",
    "load_pool",
    "make_pool",
    "parse_size",
    "save_pool",
]

#: Rows generated (or read) at a time.
CHUNK_ROWS = 8192

#: Mean top-1 softmax probability the temperature is calibrated to.
TARGET_CONFIDENCE = 0.6


@dataclass(frozen=True)
class PoolSpec:
    """The shape of a synthetic pool.

    Attributes:
        rows: all rows, labelled and unlabelled (the pool's size in the benchmark table).
        dim: feature dimension.
        classes: number of mixture components, and of columns of ``probs``.
        labelled: the first ``labelled`` rows are the labelled set.
        seed: seed of the generator (features, labels, the linear map).
    """

    rows: int
    dim: int
    classes: int
    labelled: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.rows, self.dim, self.classes) < 1 or not 0 <= self.labelled < self.rows:
            raise ValueError(f"invalid pool spec {self}")

    @property
    def unlabelled(self) -> int:
        """Number of candidate rows (``rows - labelled``)."""
        return self.rows - self.labelled

    @property
    def label(self) -> str:
        """Short name, e.g. ``20k×512`` (used in tables)."""
        rows = f"{self.rows // 1000}k" if self.rows % 1000 == 0 else str(self.rows)
        return f"{rows}×{self.dim}"


#: The benchmark sizes of ``make bench``.
SIZES: dict[str, PoolSpec] = {
    "20k": PoolSpec(rows=20_000, dim=512, classes=10),
    "200k": PoolSpec(rows=200_000, dim=2048, classes=1000),
}


def parse_size(text: str, *, labelled: int | None = None, seed: int = 0) -> PoolSpec:
    """A :data:`SIZES` name (``20k``, ``200k``) or ``ROWSxDIMxCLASSES`` (e.g. ``600x16x4``).

    ``labelled`` overrides the number of labelled rows (default 1000, or a tenth of the rows
    for a custom size smaller than 10,000).
    """
    if text in SIZES:
        base = SIZES[text]
        return PoolSpec(
            base.rows, base.dim, base.classes, base.labelled if labelled is None else labelled, seed
        )
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if not match:
        raise ValueError(
            f"unknown size {text!r}: expected one of {list(SIZES)} or ROWSxDIMxCLASSES"
        )
    rows, dim, classes = (int(g) for g in match.groups())
    if labelled is None:
        labelled = 1000 if rows >= 10_000 else max(1, rows // 10)
    return PoolSpec(rows, dim, classes, labelled, seed)


@dataclass
class SyntheticPool:
    """A generated pool.

    Attributes:
        spec: its shape.
        features: ``rows x dim`` fp32, the labelled rows first; ``None`` when not kept.
        probs: ``unlabelled x classes`` fp32 softmax outputs on the candidates, or ``None``
            when not generated.
        temperature: the calibrated softmax temperature (``nan`` when ``probs`` is ``None``).
    """

    spec: PoolSpec
    features: torch.Tensor | None
    probs: torch.Tensor | None
    temperature: float

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors a strategy reads (features and probs)."""
        return sum(
            t.numel() * t.element_size() for t in (self.features, self.probs) if t is not None
        )

    def representation(self) -> Representation:
        """Candidates and labelled rows as two views of ``features`` (no copy)."""
        if self.features is None:
            raise ValueError("this pool was generated without keeping its features")
        cut = self.spec.labelled
        return Representation(pool=self.features[cut:], labeled=self.features[:cut])

    def request(
        self, budget: int, needs: frozenset[str] | set[str], seed: int = 0
    ) -> SelectionRequest:
        """The selection request a strategy reading ``needs`` gets: the labelled rows are pool
        indices ``0 .. labelled-1``, the candidates the rest; ``embeddings`` and ``features``
        are the same :class:`Representation` object."""
        rep = self.representation() if {"embeddings", "features"} & set(needs) else None
        probs = self.probs if "probs" in needs else None
        if "probs" in needs and probs is None:
            raise ValueError("this pool was generated without probs")
        return SelectionRequest(
            pool_ids=np.arange(self.spec.labelled, self.spec.rows, dtype=np.int64),
            labeled=np.arange(self.spec.labelled, dtype=np.int64),
            budget=int(budget),
            rng=np.random.default_rng(seed),
            probs=probs,
            embeddings=rep if "embeddings" in needs else None,
            features=rep if "features" in needs else None,
            num_classes=self.spec.classes,
        )


def _chunks(total: int, chunk: int = CHUNK_ROWS) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, total)) for start in range(0, total, chunk)]


def _calibrate_temperature(logits: torch.Tensor, target: float = TARGET_CONFIDENCE) -> float:
    """The temperature ``T`` at which ``softmax(logits / T)`` has mean top-1 probability
    ``target`` (bisection on ``log T``; the mean top-1 probability falls as ``T`` grows)."""
    logits = logits.double()
    low, high = math.log(1e-4), math.log(1e4)
    for _ in range(60):
        mid = 0.5 * (low + high)
        confidence = float(torch.softmax(logits / math.exp(mid), dim=1).amax(dim=1).mean())
        if confidence > target:
            low = mid
        else:
            high = mid
    return math.exp(0.5 * (low + high))


def make_pool(
    spec: PoolSpec,
    *,
    with_probs: bool = True,
    with_features: bool = True,
    device: str | torch.device = "cpu",
) -> SyntheticPool:
    """Generate the pool ``spec`` on ``device`` (see the module docstring); deterministic.

    The features are always generated (the probs are computed from them); with
    ``with_features=False`` they are dropped before returning.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(spec.seed)
    centres = torch.randn(spec.classes, spec.dim, generator=gen)
    spread = 0.5 + torch.rand(spec.classes, generator=gen)
    labels = torch.randint(spec.classes, (spec.rows,), generator=gen)
    weight = torch.randn(spec.dim, spec.classes, generator=gen) / math.sqrt(spec.dim)
    features = torch.empty(spec.rows, spec.dim, dtype=torch.float32, device=device)
    for start, stop in _chunks(spec.rows):
        y = labels[start:stop]
        block = torch.randn(stop - start, spec.dim, generator=gen)
        block.mul_(spread[y, None]).add_(centres[y])
        features[start:stop].copy_(block)
    probs, temperature = None, float("nan")
    if with_probs:
        weight = weight.to(device)
        candidates = features[spec.labelled :]
        temperature = _calibrate_temperature(candidates[:CHUNK_ROWS] @ weight)
        probs = torch.empty(spec.unlabelled, spec.classes, dtype=torch.float32, device=device)
        for start, stop in _chunks(spec.unlabelled):
            logits = candidates[start:stop] @ weight
            probs[start:stop] = torch.softmax(logits.div_(temperature), dim=1)
    return SyntheticPool(spec, features if with_features else None, probs, temperature)


def save_pool(pool: SyntheticPool, directory: str | Path) -> None:
    """Write ``pool`` to ``directory``: ``features.npy``, ``probs.npy`` and ``spec.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if pool.features is None:
        raise ValueError("cannot save a pool without its features")
    np.save(directory / "features.npy", pool.features.cpu().numpy())
    if pool.probs is not None:
        np.save(directory / "probs.npy", pool.probs.cpu().numpy())
    meta = {"spec": asdict(pool.spec), "temperature": pool.temperature}
    (directory / "spec.json").write_text(json.dumps(meta, indent=1) + "\n")


def _read_npy(path: Path, device: torch.device) -> torch.Tensor:
    """A C-ordered fp32 ``.npy`` file read chunk by chunk into a new tensor on ``device``: the
    memory is that tensor (plus one chunk for a GPU), never a second full copy."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if fortran or dtype != np.float32 or len(shape) != 2:
            raise ValueError(f"{path}: expected a C-ordered 2-D float32 array")
        out = torch.empty(shape, dtype=torch.float32, device=device)
        buffer = out if device.type == "cpu" else torch.empty(min(shape[0], CHUNK_ROWS), shape[1])
        for start, stop in _chunks(shape[0]):
            target = buffer[start:stop] if device.type == "cpu" else buffer[: stop - start]
            view = memoryview(target.numpy()).cast("B")
            read = 0
            while read < view.nbytes:
                count = handle.readinto(view[read:])
                if not count:
                    raise ValueError(f"{path}: file ends early")
                read += count
            if device.type != "cpu":
                out[start:stop].copy_(target)
    return out


def load_pool(
    directory: str | Path,
    *,
    with_probs: bool = True,
    with_features: bool = True,
    device: str | torch.device = "cpu",
) -> SyntheticPool:
    """The pool :func:`save_pool` wrote to ``directory``, on ``device``; ``probs`` only when
    ``with_probs`` and the features only when ``with_features`` (a strategy does not pay for
    inputs it does not read)."""
    directory = Path(directory)
    device = torch.device(device)
    meta = json.loads((directory / "spec.json").read_text())
    spec = PoolSpec(**meta["spec"])
    features = _read_npy(directory / "features.npy", device) if with_features else None
    probs = _read_npy(directory / "probs.npy", device) if with_probs else None
    temperature = float(meta["temperature"]) if with_probs else float("nan")
    return SyntheticPool(spec, features, probs, temperature)
