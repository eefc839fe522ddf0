"""Oxford-IIIT Pets through :class:`torchvision.datasets.OxfordIIITPet`, read from files.

Pool = ``trainval`` (3,680 images), test = ``test`` (3,669), 37 breeds, as in the official
code (``docs/official-code.md`` section 4; it always downloads, here only with
``download``). On disk: ``<root>/oxford-iiit-pet/images/<Breed>_<n>.jpg`` and
``annotations/{trainval,test}.txt``, lines ``<image> <class id 1..37> <species> <breed id>``.
Rows follow the annotation files; labels are the class ids minus one. torchvision is imported
when Pets is read.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from asvp.data.base import DatasetNotFoundError, Split, register_dataset
from asvp.data.folder import LabelledFiles, files_split
from asvp.data.transforms import DatasetImages

BASE_FOLDER = "oxford-iiit-pet"
SPLITS = ("trainval", "test")


def _remedy(root: Path) -> str:
    from torchvision.datasets import OxfordIIITPet

    urls = " and ".join(url for url, _ in OxfordIIITPet._RESOURCES)
    return (
        f"set download: true in the grid (download=True), or download {urls} and extract both "
        f"into {root / BASE_FOLDER}"
    )


def _missing(folder: Path) -> list[str]:
    required = ["images", *(f"annotations/{split}.txt" for split in SPLITS)]
    return [name for name in required if not (folder / name).exists()]


@lru_cache(maxsize=4)
def _scan(root: str, split: str) -> LabelledFiles:
    """The split's image paths and labels in annotation order, read once per process.

    torchvision 0.28 keeps them in the private attributes ``_images`` and ``_labels``.
    """
    import torchvision
    from torchvision.datasets import OxfordIIITPet

    dataset = OxfordIIITPet(root, split=split, target_types="category")
    if not hasattr(dataset, "_images") or not hasattr(dataset, "_labels"):
        raise RuntimeError(
            f"torchvision {torchvision.__version__}: OxfordIIITPet has no _images/_labels "
            "attributes (present in 0.28); asvp/data/pets.py must be adapted"
        )
    labels = np.asarray(dataset._labels, dtype=np.int64)
    labels.flags.writeable = False
    return LabelledFiles(tuple(map(str, dataset._images)), labels, tuple(dataset.classes))


def _check_images(root: Path, scans: list[LabelledFiles]) -> None:
    absent = [path for scan in scans for path in scan.paths if not Path(path).is_file()]
    if absent:
        raise DatasetNotFoundError(
            "pets",
            root / BASE_FOLDER / "images",
            _remedy(root),
            f"{len(absent)} images listed in the annotations are missing, e.g. {absent[0]}",
        )


@register_dataset("pets", needs_root=True, images=DatasetImages())
def load_pets(root: Path, download: bool) -> Split:
    """Oxford-IIIT Pets: pool = trainval, test = test, one class per breed."""
    folder = root / BASE_FOLDER
    missing = _missing(folder)
    if missing:
        if not download:
            raise DatasetNotFoundError(
                "pets", folder, _remedy(root), "missing " + ", ".join(missing)
            )
        from torchvision.datasets import OxfordIIITPet

        try:
            OxfordIIITPet(str(root), split="test", download=True)
        except OSError as error:  # urllib's URLError included
            raise DatasetNotFoundError(
                "pets", folder, _remedy(root), f"download failed: {error}"
            ) from error
    scans = [_scan(str(root), split) for split in SPLITS]
    _check_images(root, scans)
    return files_split("pets", *scans)
