"""The pool's feature rows as the proxy reads them: resident on the GPU, or memory-mapped.

SVPp and ASVP train a proxy on the labelled rows' features and score every unlabelled row
each round (docs/design.md, "The three pipelines"). At ImageNet scale the pool's float16 features
are 1.28M x 2048 x 2 bytes = 5.2 GB; in float32 twice that. :class:`PoolFeatures` keeps them
in float16 and hands out float32 only for the rows being used:

- on a CUDA device with room for them (at most :data:`GPU_RESIDENT_FRACTION` of its free
  memory), the whole array is copied to the GPU once, in float16, and every later gather is a
  device-side index;
- otherwise (on CPU, or a pool too large for the GPU) the array stays where the feature store
  put it: a read-only memory map (:mod:`asvp.features`). Rows are read in chunks of
  ``batch_rows``, so anonymous memory holds one float32 chunk at a time, never the pool; the
  operating system's page cache keeps the file's pages if memory allows, and drops them
  when it does not. On CUDA the chunks travel through pinned memory.

The official code fed the proxy through a per-sample ``Dataset``/``DataLoader`` (one Python
call and one small tensor per row, then a collate); here every gather is one vectorised
operation over a batch of rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

GPU_RESIDENT_FRACTION = 0.5
"""Keep the pool on the GPU when its float16 bytes fit in this fraction of the free memory
(the rest is left for the proxy, its outputs and the selection kernels)."""

DEFAULT_BATCH_ROWS = 4096
UPLOAD_ROWS = 65536


class PoolFeatures:
    """Float16 feature rows of the whole pool (row ``i`` = pool index ``i``), on ``device``
    when they fit there, else memory-mapped on the host.

    Args:
        features: ``N x D`` rows: a numpy array (typically the feature store's float16 memory
            map; not copied on the host) or a torch tensor.
        device: where gathered rows are returned (and where the pool is kept when it fits).
        resident: force keeping the pool on ``device`` (True) or reading it from the host
            array (False); by default: on CUDA when it fits, never on CPU (the memory map is
            already addressable there, and copying it would double its anonymous memory).
    """

    def __init__(
        self,
        features: np.ndarray | torch.Tensor,
        device: torch.device | str,
        resident: bool | None = None,
    ) -> None:
        if features.ndim != 2:
            raise ValueError(f"pool features must be 2-D (N x D), got shape {features.shape}")
        self.device = torch.device(device)
        self.shape = (int(features.shape[0]), int(features.shape[1]))
        if resident is None:
            resident = self.device.type == "cuda" and _fits_on_gpu(self.shape, self.device)
        self._host: np.ndarray | None = None
        self._resident: torch.Tensor | None = None
        host = features.cpu().numpy() if torch.is_tensor(features) else features
        if resident:
            self._resident = _upload(host, self.device)
        else:
            self._host = host

    @property
    def resident(self) -> bool:
        """Whether the whole pool is held on :attr:`device`."""
        return self._resident is not None

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, ids: np.ndarray) -> torch.Tensor:
        """The float32 rows of pool indices ``ids`` (in that order), on :attr:`device`."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._resident is not None:
            return self._resident[torch.from_numpy(ids).to(self.device)].float()
        assert self._host is not None
        return _to_device(self._host[_host_index(ids)], self.device).float()

    def batches(
        self, ids: np.ndarray, batch_rows: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[torch.Tensor]:
        """The float32 rows of ``ids`` in consecutive chunks of ``batch_rows``, on
        :attr:`device`: what pool scoring streams through the proxy."""
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, len(ids), batch_rows):
            yield self.rows(ids[start : start + batch_rows])


def _upload(host: np.ndarray, device: torch.device) -> torch.Tensor:
    """The host rows as one float16 tensor on ``device``, copied chunk by chunk (a memory
    map is never read into host memory as a whole)."""
    out = torch.empty(host.shape, dtype=torch.float16, device=device)
    for start in range(0, len(host), UPLOAD_ROWS):
        chunk = host[start : start + UPLOAD_ROWS]
        out[start : start + len(chunk)] = _to_device(chunk, device)
    return out


def _fits_on_gpu(shape: tuple[int, int], device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return shape[0] * shape[1] * 2 <= GPU_RESIDENT_FRACTION * free


def _host_index(ids: np.ndarray) -> slice | np.ndarray:
    """A slice when ``ids`` are consecutive (a plain read of the memory map, no index
    array), else the ids themselves."""
    if len(ids) and ids[-1] - ids[0] == len(ids) - 1 and np.all(np.diff(ids) == 1):
        return slice(int(ids[0]), int(ids[-1]) + 1)
    return ids


def _to_device(chunk: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host chunk as a tensor of its own dtype on ``device``; pinned on its way to CUDA."""
    if not chunk.flags.owndata:  # a view of the pool (a slice): copy, never alias the pool
        chunk = np.array(chunk)
    tensor = torch.from_numpy(chunk)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
