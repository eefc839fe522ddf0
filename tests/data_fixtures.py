"""Small datasets written in the real on-disk formats, for tests that load data from files.

Each writer produces the layout that torchvision's dataset class (and so
:func:`asvp.data.load_dataset`) reads, with a few images per class:

- :func:`write_cifar10`, :func:`write_cifar100`: pickled batches under ``<root>``;
- :func:`write_image_folder`: an ``ImageFolder`` class-folder tree;
- :func:`write_imagenet_folder`: ``<root>/imagenet/{train,val}/<wnid>/*.JPEG``, optionally
  with torchvision's ``meta.bin``;
- :func:`write_pets`: ``<root>/oxford-iiit-pet/{images,annotations}``.

Images carry a learnable class signal (:func:`pattern_image`: a class hue plus class-dependent
stripes, with pixel noise), so even a short active-learning run can beat chance. Everything is
determined by ``seed``. Checksums differ from the real files; the loaders only check presence.
"""

from __future__ import annotations

import colorsys
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_SIZE = (32, 32)

IMAGENET_WNIDS = (
    "n01440764",  # tench
    "n01443537",  # goldfish
    "n01484850",  # great white shark
    "n01491361",  # tiger shark
    "n01494475",  # hammerhead
)
"""The first ImageNet-1k classes (sorted wnids), the default classes of the ImageNet fixture."""

PETS_BREEDS = (
    ("Abyssinian", 1),
    ("american_bulldog", 2),
    ("american_pit_bull_terrier", 2),
    ("basset_hound", 2),
    ("beagle", 2),
    ("Bengal", 1),
    ("Birman", 1),
    ("Bombay", 1),
    ("boxer", 2),
    ("British_Shorthair", 1),
    ("chihuahua", 2),
    ("Egyptian_Mau", 1),
    ("english_cocker_spaniel", 2),
    ("english_setter", 2),
    ("german_shorthaired", 2),
    ("great_pyrenees", 2),
    ("havanese", 2),
    ("japanese_chin", 2),
    ("keeshond", 2),
    ("leonberger", 2),
    ("Maine_Coon", 1),
    ("miniature_pinscher", 2),
    ("newfoundland", 2),
    ("Persian", 1),
    ("pomeranian", 2),
    ("pug", 2),
    ("Ragdoll", 1),
    ("Russian_Blue", 1),
    ("saint_bernard", 2),
    ("samoyed", 2),
    ("scottish_terrier", 2),
    ("shiba_inu", 2),
    ("Siamese", 1),
    ("Sphynx", 1),
    ("staffordshire_bull_terrier", 2),
    ("wheaten_terrier", 2),
    ("yorkshire_terrier", 2),
)
"""The 37 Oxford-IIIT Pet breeds in class-id order (id = position + 1), species 1 cat, 2 dog."""


def pattern_image(
    label: int, num_classes: int, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A uint8 (h, w, 3) image of class ``label``: the class's hue, stripes whose direction and
    period depend on the class, and Gaussian pixel noise (sigma 20)."""
    height, width = size
    colour = 255 * np.array(colorsys.hsv_to_rgb(label / num_classes, 0.7, 0.8))
    rows, columns = np.mgrid[0:height, 0:width]
    half_period = 1 + label % 3
    along = columns if label % 2 == 0 else rows
    stripes = np.where((along // half_period) % 2 == 0, 40.0, -40.0)
    image = colour + stripes[..., None] + rng.normal(0.0, 20.0, (height, width, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _per_class(count: int | Sequence[int], num_classes: int) -> list[int]:
    counts = [count] * num_classes if isinstance(count, int) else list(count)
    if len(counts) != num_classes:
        raise ValueError(f"{len(counts)} counts for {num_classes} classes")
    return counts


def _shuffled_labels(counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Labels with ``counts[c]`` copies of class c, in random order (CIFAR files are mixed)."""
    return rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)


def _cifar_rows(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 3072) rows, channel-major (1024 red, 1024 green, 1024 blue) as in CIFAR."""
    images = [pattern_image(int(label), num_classes, CIFAR_SIZE, rng) for label in labels]
    return np.stack(images).transpose(0, 3, 1, 2).reshape(len(labels), 3072)


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)


def write_cifar10(
    root: str | Path,
    train_per_class: int | Sequence[int] = 10,
    test_per_class: int | Sequence[int] = 5,
    seed: int = 0,
) -> Path:
    """CIFAR-10 in ``<root>/cifar-10-batches-py``: the training images spread over
    ``data_batch_1..5`` in random class order, ``test_batch`` and ``batches.meta``.
    Returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = _shuffled_labels(_per_class(train_per_class, 10), rng)
    train_rows = _cifar_rows(train_labels, 10, rng)
    for number, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        _pickle(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of 5",
                "labels": train_labels[part].tolist(),
                "data": train_rows[part],
                "filenames": [f"train_{index}.png" for index in part.tolist()],
            },
        )
    test_labels = _shuffled_labels(_per_class(test_per_class, 10), rng)
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": _cifar_rows(test_labels, 10, rng),
            "filenames": [f"test_{index}.png" for index in range(len(test_labels))],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    _pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072},
    )
    return folder


def write_cifar100(
    root: str | Path,
    train_per_class: int | Sequence[int] = 2,
    test_per_class: int | Sequence[int] = 1,
    seed: int = 0,
) -> Path:
    """CIFAR-100 in ``<root>/cifar-100-python``: ``train``, ``test`` (fine and coarse labels,
    coarse = fine // 5) and ``meta``. Returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = _shuffled_labels(_per_class(per_class, 100), rng)
        _pickle(
            folder / name,
            {
                "filenames": [f"{name}_{index}.png" for index in range(len(labels))],
                "batch_label": f"{name} batch 1 of 1",
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
                "data": _cifar_rows(labels, 100, rng),
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{index:02d}" for index in range(100)],
            "coarse_label_names": [f"coarse_{index:02d}" for index in range(20)],
        },
    )
    return folder


def _save_image(pixels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(pixels).save(path, format="JPEG", quality=95)
    else:
        Image.fromarray(pixels).save(path)


def write_image_folder(
    path: str | Path,
    classes: Sequence[str],
    per_class: int | Sequence[int],
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
    ext: str = "JPEG",
) -> Path:
    """An ``ImageFolder`` tree ``<path>/<class>/<class>_<i>.<ext>`` of (height, width) ``size``
    images; ``ext`` picks the format (JPEG/jpg or PNG). Returns ``path``."""
    rng = np.random.default_rng(seed)
    folder = Path(path)
    for label, (name, count) in enumerate(
        zip(classes, _per_class(per_class, len(classes)), strict=True)
    ):
        for index in range(count):
            pixels = pattern_image(label, len(classes), size, rng)
            _save_image(pixels, folder / name / f"{name}_{index:04d}.{ext}")
    return folder


def write_imagenet_folder(
    root: str | Path,
    classes: Sequence[str] = IMAGENET_WNIDS,
    train_per_class: int | Sequence[int] = 6,
    val_per_class: int | Sequence[int] = 3,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
    subdir: str = "imagenet",
    meta_bin: bool = False,
) -> Path:
    """ImageNet in ``<root>/<subdir>/{train,val}/<wnid>/*.JPEG``; with ``meta_bin`` also
    torchvision's ``meta.bin`` (wnid -> class names, val wnids), the layout
    :class:`torchvision.datasets.ImageNet` reads. Returns ``<root>/<subdir>``."""
    folder = Path(root) / subdir
    write_image_folder(folder / "train", classes, train_per_class, size, seed)
    write_image_folder(folder / "val", classes, val_per_class, size, seed + 1)
    if meta_bin:
        import torch

        wnid_to_classes = {wnid: (f"class {wnid}",) for wnid in classes}
        val_wnids = [
            wnid
            for wnid, count in zip(classes, _per_class(val_per_class, len(classes)), strict=True)
            for _ in range(count)
        ]
        torch.save((wnid_to_classes, val_wnids), folder / "meta.bin")
    return folder


def write_pets(
    root: str | Path,
    classes: int = 3,
    trainval_per_class: int | Sequence[int] = 4,
    test_per_class: int | Sequence[int] = 2,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
) -> Path:
    """Oxford-IIIT Pets in ``<root>/oxford-iiit-pet``: the first ``classes`` breeds of
    :data:`PETS_BREEDS`, ``images/<Breed>_<n>.jpg`` and ``annotations/{trainval,test}.txt``
    (lines ``<image> <class id> <species> <breed id within species>``, by class id, then
    image name, as in the real files). Returns that folder."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "oxford-iiit-pet"
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    breeds = PETS_BREEDS[:classes]
    number = 1
    for split, per_class in (("trainval", trainval_per_class), ("test", test_per_class)):
        lines: list[tuple[int, str]] = []
        for label, ((breed, species), count) in enumerate(
            zip(breeds, _per_class(per_class, classes), strict=True)
        ):
            breed_id = [s for _, s in PETS_BREEDS[: label + 1]].count(species)
            for _ in range(count):
                name = f"{breed}_{number}"
                number += 1
                _save_image(pattern_image(label, classes, size, rng), folder / f"images/{name}.jpg")
                lines.append((label, f"{name} {label + 1} {species} {breed_id}"))
        text = "".join(line + "\n" for _, line in sorted(lines))
        (folder / "annotations" / f"{split}.txt").write_text(text)
    return folder
