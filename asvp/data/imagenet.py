"""ImageNet-1k (ILSVRC2012) from its usual on-disk layouts, read from files.

Looked for in ``<root>/<subdir>`` (``subdir`` default ``imagenet``), in one of two layouts:

1. torchvision's: ``meta.bin`` (or the devkit archive it is parsed from) with ``train/`` and
   ``val/`` class folders, or the archives ``ILSVRC2012_img_train.tar`` /
   ``ILSVRC2012_img_val.tar`` that :class:`torchvision.datasets.ImageNet` extracts into them on
   first use (verifying the archives' checksums);
2. plain class-folder trees ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``, read with
   :class:`torchvision.datasets.ImageFolder`.

Pool = the training images, test = the validation images, both in sorted ``ImageFolder``
order (the official code's row contract, see :mod:`asvp.data.folder`). ImageNet cannot be
downloaded automatically: ``download`` is ignored. torchvision is imported when ImageNet is
read.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from asvp.data.base import DatasetNotFoundError, Split, register_dataset, resolve_under
from asvp.data.folder import LabelledFiles, files_split, labelled_files, scan_image_folder
from asvp.data.transforms import DatasetImages

SPLITS = ("train", "val")


def _remedy(folder: Path) -> str:
    return (
        "ILSVRC2012 from image-net.org: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
        f"ILSVRC2012_devkit_t12.tar.gz in {folder} (torchvision.datasets.ImageNet layout), or "
        f"an ImageFolder tree {folder}/train/<wnid>/*.JPEG and {folder}/val/<wnid>/*.JPEG"
    )


@lru_cache(maxsize=4)
def _scan_torchvision_imagenet(folder: str, split: str) -> LabelledFiles:
    """One scan per process, folder and split; class names are the wnids (folder names)."""
    from torchvision.datasets import ImageNet

    dataset = ImageNet(folder, split=split)
    return labelled_files(dataset, classes=dataset.wnids)


def _torchvision_layout(folder: Path) -> tuple[LabelledFiles, LabelledFiles]:
    from torchvision.datasets.imagenet import ARCHIVE_META

    for split in SPLITS:
        archive = ARCHIVE_META[split][0]
        if not (folder / split).is_dir() and not (folder / archive).is_file():
            raise DatasetNotFoundError(
                "imagenet", folder, _remedy(folder), f"neither {split}/ nor {archive}"
            )
    train, val = (_scan_torchvision_imagenet(str(folder), split) for split in SPLITS)
    return train, val


@register_dataset("imagenet", needs_root=True, images=DatasetImages())
def load_imagenet(root: Path, download: bool, *, subdir: Path = "imagenet") -> Split:
    """ImageNet-1k: pool = 1,281,167 training images, test = 50,000 validation images.

    ``subdir`` is absolute or relative to the data root.
    """
    from torchvision.datasets.imagenet import ARCHIVE_META, META_FILE

    folder = resolve_under(root, subdir)
    if not folder.is_dir():
        raise DatasetNotFoundError("imagenet", folder, _remedy(folder), "no such folder")
    if (folder / META_FILE).is_file() or (folder / ARCHIVE_META["devkit"][0]).is_file():
        train, val = _torchvision_layout(folder)
    elif all((folder / split).is_dir() for split in SPLITS):
        train, val = (
            scan_image_folder("imagenet", folder / split, _remedy(folder)) for split in SPLITS
        )
    else:
        raise DatasetNotFoundError(
            "imagenet",
            folder,
            _remedy(folder),
            f"neither {META_FILE} / the devkit archive nor both train/ and val/ folders",
        )
    return files_split("imagenet", train, val)
