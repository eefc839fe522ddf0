"""Datasets from files in their real on-disk formats, the two image sets, and the registry."""

import pickle
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.datasets
import torchvision.transforms as T
from data_fixtures import (
    IMAGENET_WNIDS,
    PETS_BREEDS,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_imagenet_folder,
    write_pets,
)
from PIL import Image
from transform_data import transform_of

from asvp.data import (
    ArrayImageSet,
    DatasetNotFoundError,
    FileImageSet,
    ImageSet,
    Split,
    available_datasets,
    check_dataset_options,
    dataset_needs_root,
    load_dataset,
)
from asvp.data.cifar_lt import KEPT_INDICES_ARTIFACT, long_tail_counts
from asvp.data.embedded import _mnist5k_arrays, stratified_split

IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
ROOT_DATASETS = ["cifar10", "cifar100", "cifar10_lt", "imagenet", "pets", "imagefolder"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """One root holding every fixture (written once for the module, about 0.2 s)."""
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, train_per_class=50, test_per_class=10, seed=1)
    write_cifar100(root, train_per_class=2, test_per_class=1, seed=2)
    write_imagenet_folder(root, train_per_class=[6, 5, 4, 6, 3], val_per_class=2, seed=3)
    write_pets(root, classes=3, trainval_per_class=[4, 3, 5], test_per_class=2, seed=4)
    write_image_folder(root / "own" / "train", ["cat", "dog"], 5, seed=5)
    write_image_folder(root / "own" / "val", ["cat", "dog"], 3, seed=6, ext="png")
    return root


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as file:
        return pickle.load(file, encoding="latin1")


def _cifar_images(rows: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


# -- the registry ---------------------------------------------------------------------------


def test_every_dataset_is_registered_and_says_whether_it_reads_files():
    assert set(available_datasets()) >= {*ROOT_DATASETS, "mnist5k"}
    assert not dataset_needs_root("mnist5k")
    assert all(dataset_needs_root(name) for name in ROOT_DATASETS)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'; available: cifar10, "):
        load_dataset("cifar11")


def test_unknown_missing_and_badly_typed_options_name_themselves(data_root):
    with pytest.raises(
        ValueError,
        match=r"dataset 'cifar10_lt': imbalance: got 0.1; expected a known option; allowed: "
        r"imbalance_factor \(default 0.1\), imbalance_seed \(default 0\), kept_indices_file",
    ):
        load_dataset("cifar10_lt", root=data_root, imbalance=0.1)
    with pytest.raises(
        ValueError,
        match="dataset 'cifar10': root_dir: got .*expected a known option; allowed: none",
    ):
        load_dataset("cifar10", root_dir=data_root)
    with pytest.raises(
        ValueError, match=r"dataset 'imagefolder': path: got '<missing>'; .*\(required\)"
    ):
        load_dataset("imagefolder", root=data_root)
    with pytest.raises(TypeError, match="download='yes'; expected true or false"):
        load_dataset("cifar10", root=data_root, download="yes")
    with pytest.raises(TypeError, match="root=3; expected a path"):
        load_dataset("cifar10", root=3)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        (
            "mnist5k",
            {"test_size": "abc"},
            r"test_size: got 'abc'; expected an integer in \[1, 4999\]",
        ),
        (
            "mnist5k",
            {"test_size": True},
            r"test_size: got True; expected an integer in \[1, 4999\]",
        ),
        (
            "mnist5k",
            {"test_size": 5000},
            r"test_size: got 5000; expected an integer in \[1, 4999\]",
        ),
        (
            "mnist5k",
            {"pool_size": 0},
            r"pool_size: got 0; expected an integer in \[1, 4999\] or null",
        ),
        (
            "mnist5k",
            {"test_size": 1000, "pool_size": 4500},
            r"pool_size: got 4500; expected an integer in \[1, 4000\] \(5000 - test_size\)",
        ),
        ("mnist5k", {"split_seed": -1}, r"split_seed: got -1; expected an integer >= 0"),
        ("imagenet", {"subdir": ""}, r"subdir: got ''; expected a file path"),
        ("imagefolder", {"path": "own", "train": ""}, r"train: got ''; expected a file path"),
        ("cifar100", {"download": True}, r"download: got True; expected a known option"),
    ],
)
def test_check_dataset_options_refuses_from_the_declarations_alone(name, options, message):
    with pytest.raises(ValueError, match=rf"^dataset '{name}': {message}"):
        check_dataset_options(name, options)


def test_check_dataset_options_reads_no_file_and_converts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data under ./data
    assert check_dataset_options("cifar10_lt", {"imbalance_factor": 1}) == {"imbalance_factor": 1.0}
    assert check_dataset_options("imagefolder", {"path": "nowhere"}) == {"path": "nowhere"}
    assert check_dataset_options("imagenet", {}) == {}
    assert check_dataset_options("mnist5k", {"test_size": 4000, "pool_size": 1000}) == {
        "test_size": 4000,
        "pool_size": 1000,
    }
    assert not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'"):
        check_dataset_options("cifar11", {})


def test_mnist5k_options_are_checked_when_loading():
    with pytest.raises(ValueError, match=r"dataset 'mnist5k': pool_size: got 4500; expected"):
        load_dataset("mnist5k", pool_size=4500)


def test_split_checks_classes_and_artifact_names():
    labels = np.zeros(2, dtype=np.int64)
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    ten, five = ArrayImageSet(images, labels, 10), ArrayImageSet(images, labels, 5)
    assert Split("x", ten, ten).artifacts == {}
    with pytest.raises(ValueError, match="the pool has 10 classes but the test set has 5"):
        Split("x", ten, five)
    with pytest.raises(ValueError, match="artifact key 'a/b' is not a plain file name"):
        Split("x", ten, ten, artifacts={"a/b": labels})
    with pytest.raises(TypeError):
        ImageSet()  # abstract


# -- missing data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "where", "remedy"),
    [
        ("cifar10", {}, "cifar-10-batches-py", "cifar-10-python.tar.gz and extract it into"),
        ("cifar100", {}, "cifar-100-python", "cifar-100-python.tar.gz and extract it into"),
        ("cifar10_lt", {}, "cifar-10-batches-py", "set download: true"),
        ("imagenet", {}, "imagenet", "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "),
        ("imagenet", {"subdir": "in1k"}, "in1k", "an ImageFolder tree"),
        ("pets", {}, "oxford-iiit-pet", "annotations.tar.gz and extract both into"),
        ("imagefolder", {"path": "mine"}, "mine/train", "torchvision ImageFolder layout"),
    ],
)
def test_missing_data_names_dataset_resolved_path_and_remedy(
    tmp_path, monkeypatch, name, options, where, remedy
):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset(name, root="relative/root", **options)
    assert time.perf_counter() - start < 1.0
    error = caught.value
    expected_path = tmp_path / "relative" / "root" / where
    assert isinstance(error, FileNotFoundError)
    assert (error.dataset, error.path) == (name, expected_path)
    assert remedy in error.remedy
    message = str(error)
    assert f"dataset {name!r}" in message
    assert str(expected_path) in message
    assert error.remedy in message
    again = pickle.loads(pickle.dumps(error))  # crosses process boundaries in submitit jobs
    assert (again.dataset, again.path, again.remedy, str(again)) == (
        name,
        error.path,
        error.remedy,
        message,
    )


def test_the_default_root_is_data_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10")
    assert caught.value.path == tmp_path / "data" / "cifar-10-batches-py"


@pytest.fixture
def no_network(monkeypatch):
    """urlopen that fails at once (the machine is offline) and records the URLs asked for."""
    requested: list[str] = []

    def refuse(request, *args, **kwargs):
        requested.append(getattr(request, "full_url", request))
        raise urllib.error.URLError("network disabled in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return requested


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
        ("cifar10_lt", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("pets", "https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz"),
    ],
)
def test_download_is_passed_to_torchvision_and_a_failure_says_so(tmp_path, no_network, name, url):
    with pytest.raises(DatasetNotFoundError, match="download.*failed.*network disabled"):
        load_dataset(name, root=tmp_path, download=True)
    assert no_network[0] == url


def test_present_files_are_read_without_downloading(data_root, no_network):
    assert len(load_dataset("cifar10", root=data_root, download=True).pool) == 500
    assert len(load_dataset("pets", root=data_root, download=True).pool) == 12
    assert no_network == []


# -- CIFAR ------------------------------------------------------------------------------------


def test_cifar10_reads_the_batches_in_order(data_root):
    split = load_dataset("cifar10", root=data_root)
    folder = data_root / "cifar-10-batches-py"
    batches = [_unpickle(folder / f"data_batch_{n}") for n in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    assert (split.name, len(split.pool), len(split.test)) == ("cifar10", 500, 100)
    assert split.pool.num_classes == split.test.num_classes == 10
    assert split.pool.labels.dtype == np.int64
    assert split.pool.labels.tolist() == [label for b in batches for label in b["labels"]]
    assert split.test.labels.tolist() == test["labels"]
    assert np.bincount(split.pool.labels).tolist() == [50] * 10
    rows = np.concatenate([b["data"] for b in batches])
    np.testing.assert_array_equal(split.pool.images, _cifar_images(rows))
    assert split.artifacts == {}


def test_cifar_batches_scale_and_normalise_the_pixels(data_root):
    split = load_dataset("cifar10", root=data_root)
    mean, std = IMAGENET_NORM
    rows = np.array([3, 0, 7])
    batch = split.pool.batch(rows, transform_of(32, mean, std))
    pixels = torch.from_numpy(split.pool.images[rows]).permute(0, 3, 1, 2).float() / 255
    expected = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert batch.dtype == torch.float32
    torch.testing.assert_close(batch, expected)
    assert split.pool.batch(rows, transform_of(224, mean, std)).shape == (
        3,
        3,
        224,
        224,
    )  # "Resize 224"


def test_cifar100_uses_the_fine_labels(data_root):
    split = load_dataset("cifar100", root=data_root)
    train = _unpickle(data_root / "cifar-100-python" / "train")
    assert (len(split.pool), len(split.test), split.pool.num_classes) == (200, 100, 100)
    assert split.pool.labels.tolist() == train["fine_labels"]
    np.testing.assert_array_equal(split.pool.images, _cifar_images(train["data"]))


def test_a_missing_cifar_file_is_named(tmp_path):
    folder = write_cifar10(tmp_path, train_per_class=1, test_per_class=1)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"\(missing data_batch_3\)"):
        load_dataset("cifar10", root=tmp_path)


# -- CIFAR-10-LT ------------------------------------------------------------------------------


def test_long_tail_counts_give_the_official_20431_images():
    counts = long_tail_counts(5000, 10, 0.1)
    assert counts.tolist() == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    assert counts.sum() == 20431


def test_cifar10_lt_keeps_a_long_tailed_subset_reproducible_from_the_seed(data_root):
    full = load_dataset("cifar10", root=data_root)
    split = load_dataset("cifar10_lt", root=data_root)
    kept = split.artifacts[KEPT_INDICES_ARTIFACT]
    expected_counts = [int(50 * 0.1 ** (c / 9)) for c in range(10)]  # 50, 38, ..., 5
    assert np.bincount(split.pool.labels).tolist() == expected_counts
    assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(split.pool.labels, full.pool.labels[kept])
    np.testing.assert_array_equal(split.pool.images, full.pool.images[kept])
    np.testing.assert_array_equal(split.test.labels, full.test.labels)  # balanced test set
    again = load_dataset("cifar10_lt", root=data_root, imbalance_seed=0)
    np.testing.assert_array_equal(again.artifacts[KEPT_INDICES_ARTIFACT], kept)
    other = load_dataset("cifar10_lt", root=data_root, imbalance_seed=1)
    assert not np.array_equal(other.artifacts[KEPT_INDICES_ARTIFACT], kept)
    balanced = load_dataset("cifar10_lt", root=data_root, imbalance_factor=1)
    assert len(balanced.pool) == 500


def test_cifar10_lt_uses_the_smallest_class_as_n_max(tmp_path):
    write_cifar10(tmp_path, train_per_class=[12, 10, 11, 10, 12, 13, 10, 10, 14, 10])
    split = load_dataset("cifar10_lt", root=tmp_path, imbalance_factor=0.5)
    assert np.bincount(split.pool.labels).tolist() == [int(10 * 0.5 ** (c / 9)) for c in range(10)]


def test_cifar10_lt_reads_a_saved_kept_indices_file(data_root, tmp_path):
    drawn = load_dataset("cifar10_lt", root=data_root, imbalance_seed=4)
    kept = drawn.artifacts[KEPT_INDICES_ARTIFACT]
    np.save(data_root / "allidx_imb.npy", kept[::-1])  # order in the file does not matter
    relative = load_dataset("cifar10_lt", root=data_root, kept_indices_file="allidx_imb.npy")
    np.testing.assert_array_equal(relative.artifacts[KEPT_INDICES_ARTIFACT], kept)
    np.testing.assert_array_equal(relative.pool.images, drawn.pool.images)
    np.save(tmp_path / "kept.npy", kept)
    from_absolute = load_dataset(
        "cifar10_lt", root=data_root, kept_indices_file=str(tmp_path / "kept.npy")
    )
    np.testing.assert_array_equal(from_absolute.pool.labels, drawn.pool.labels)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.array([1, 1, 2]), "distinct integers in 0..499"),
        (np.array([0, 500]), "distinct integers in 0..499"),
        (np.array([[0, 1]]), r"int64 \(1, 2\); expected a 1-D array"),
        (np.array([0.5, 1.0]), r"float64 \(2,\); expected"),
    ],
)
def test_a_bad_kept_indices_file_is_refused(data_root, tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(ValueError, match=message):
        load_dataset("cifar10_lt", root=data_root, kept_indices_file=str(tmp_path / "bad.npy"))


def test_a_missing_kept_indices_file_is_a_missing_dataset(data_root):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("cifar10_lt", root=data_root, kept_indices_file="nowhere.npy")
    assert caught.value.path == data_root / "nowhere.npy"
    assert "allidx_imb.npy" in caught.value.remedy


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"imbalance_factor": 0}, r"imbalance_factor: got 0; expected a finite number in \(0, 1\]"),
        ({"imbalance_factor": 1.5}, r"imbalance_factor: got 1.5; expected a finite number in"),
        ({"imbalance_factor": "0.1"}, r"imbalance_factor: got '0.1'; expected a finite number"),
        ({"imbalance_factor": True}, r"imbalance_factor: got True; expected a finite number"),
        ({"imbalance_seed": -1}, r"imbalance_seed: got -1; expected an integer >= 0"),
        ({"imbalance_seed": 1.0}, r"imbalance_seed: got 1.0; expected an integer >= 0"),
        ({"kept_indices_file": 3}, r"kept_indices_file: got 3; expected a file path or null"),
        ({"kept_indices_file": ""}, r"kept_indices_file: got ''; expected a file path or null"),
    ],
)
def test_bad_cifar10_lt_options_name_option_value_and_expectation(data_root, options, message):
    with pytest.raises(ValueError, match=r"^dataset 'cifar10_lt': " + message):
        load_dataset("cifar10_lt", root=data_root, **options)


# -- ImageNet ---------------------------------------------------------------------------------


def test_imagenet_folders_are_read_in_sorted_imagefolder_order(data_root):
    split = load_dataset("imagenet", root=data_root)
    train = data_root / "imagenet" / "train"
    expected = [
        (str(path), label)
        for label, wnid in enumerate(sorted(IMAGENET_WNIDS))
        for path in sorted((train / wnid).iterdir())
    ]
    assert isinstance(split.pool, FileImageSet)
    assert (len(split.pool), len(split.test), split.pool.num_classes) == (24, 10, 5)
    assert list(zip(split.pool.paths, split.pool.labels.tolist(), strict=True)) == expected
    assert np.bincount(split.test.labels).tolist() == [2] * 5
    assert all(Path(path).parent.parent.name == "val" for path in split.test.paths)


def test_imagenet_with_meta_bin_goes_through_torchvision_imagenet(tmp_path, monkeypatch):
    write_imagenet_folder(tmp_path / "plain", seed=8)
    write_imagenet_folder(tmp_path / "meta", seed=8, meta_bin=True)
    made = []

    class RecordingImageNet(torchvision.datasets.ImageNet):
        def __init__(self, root, split="train", **kwargs):
            made.append(split)
            super().__init__(root, split=split, **kwargs)

    monkeypatch.setattr(torchvision.datasets, "ImageNet", RecordingImageNet)
    plain = load_dataset("imagenet", root=tmp_path / "plain")
    assert made == []
    with_meta = load_dataset("imagenet", root=tmp_path / "meta")
    assert made == ["train", "val"]
    for part in ("pool", "test"):
        ours, theirs = getattr(plain, part), getattr(with_meta, part)
        np.testing.assert_array_equal(ours.labels, theirs.labels)
        assert [Path(p).relative_to(tmp_path / "plain") for p in ours.paths] == [
            Path(p).relative_to(tmp_path / "meta") for p in theirs.paths
        ]


def test_imagenet_options_and_incomplete_layouts(tmp_path):
    folder = write_imagenet_folder(tmp_path, subdir="in1k", train_per_class=2, val_per_class=1)
    assert len(load_dataset("imagenet", root=tmp_path, subdir="in1k").pool) == 10
    with pytest.raises(ValueError, match=r"subdir: got 3; expected a file path"):
        load_dataset("imagenet", root=tmp_path, subdir=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="nor both train/ and val/ folders"):
        load_dataset("imagenet", root=tmp_path, subdir="empty")
    (folder / "meta.bin").write_bytes(b"")
    for child in (folder / "train").iterdir():
        for image in child.iterdir():
            image.unlink()
        child.rmdir()
    (folder / "train").rmdir()
    with pytest.raises(DatasetNotFoundError, match="neither train/ nor ILSVRC2012_img_train.tar"):
        load_dataset("imagenet", root=tmp_path, subdir="in1k")


def test_imagenet_train_and_val_must_have_the_same_classes(tmp_path):
    write_image_folder(tmp_path / "imagenet" / "train", IMAGENET_WNIDS[:3], 2)
    write_image_folder(tmp_path / "imagenet" / "val", IMAGENET_WNIDS[1:4], 1)
    with pytest.raises(
        ValueError, match="only in the pool: n01440764; only in the test set: n01491361"
    ):
        load_dataset("imagenet", root=tmp_path)


def test_an_empty_class_folder_is_missing_data(tmp_path):
    write_image_folder(tmp_path / "imagenet" / "train", IMAGENET_WNIDS[:2], 2)
    write_image_folder(tmp_path / "imagenet" / "val", IMAGENET_WNIDS[:2], 1)
    (tmp_path / "imagenet" / "train" / "n09999999").mkdir()
    with pytest.raises(DatasetNotFoundError, match="Found no valid file for the classes n09999999"):
        load_dataset("imagenet", root=tmp_path)


# -- Pets and own folders ---------------------------------------------------------------------


def test_pets_follow_the_annotation_files(data_root):
    split = load_dataset("pets", root=data_root)
    folder = data_root / "oxford-iiit-pet"
    lines = (folder / "annotations" / "trainval.txt").read_text().split("\n")[:-1]
    assert (len(split.pool), len(split.test), split.pool.num_classes) == (12, 6, 3)
    assert list(split.pool.paths) == [
        str(folder / "images" / f"{line.split()[0]}.jpg") for line in lines
    ]
    assert split.pool.labels.tolist() == [int(line.split()[1]) - 1 for line in lines]
    assert np.bincount(split.pool.labels).tolist() == [4, 3, 5]
    assert [name for name, _ in PETS_BREEDS[:3]] == [
        "Abyssinian",
        "american_bulldog",
        "american_pit_bull_terrier",
    ]


def test_pets_with_a_missing_image_is_missing_data(tmp_path):
    folder = write_pets(tmp_path, classes=2, trainval_per_class=2, test_per_class=1)
    (folder / "images" / "Abyssinian_1.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 images listed in the annotations"):
        load_dataset("pets", root=tmp_path)
    (folder / "annotations" / "test.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"\(missing annotations/test.txt\)"):
        load_dataset("pets", root=tmp_path)


def test_imagefolder_reads_own_data_relative_or_absolute(data_root):
    relative = load_dataset("imagefolder", root=data_root, path="own")
    absolute = load_dataset("imagefolder", root="/nowhere", path=str(data_root / "own"))
    assert relative.pool.paths == absolute.pool.paths
    assert (len(relative.pool), len(relative.test), relative.pool.num_classes) == (10, 6, 2)
    assert relative.test.paths[0].endswith("own/val/cat/cat_0000.png")
    swapped = load_dataset("imagefolder", root=data_root, path="own", train="val", test="train")
    assert swapped.pool.paths == relative.test.paths


def test_imagefolder_refuses_different_classes(tmp_path):
    write_image_folder(tmp_path / "a" / "train", ["cat", "dog"], 1)
    write_image_folder(tmp_path / "a" / "val", ["cat", "cow"], 1)
    with pytest.raises(ValueError, match="only in the pool: dog; only in the test set: cow"):
        load_dataset("imagefolder", root=tmp_path, path="a")


def test_fixture_classes_are_learnable(data_root):
    """A nearest-class-mean rule on the pixels separates the fixture's classes."""
    split = load_dataset("imagenet", root=data_root)
    pool = split.pool.batch(np.arange(len(split.pool)), transform_of(16, *HALF)).flatten(1)
    test = split.test.batch(np.arange(len(split.test)), transform_of(16, *HALF)).flatten(1)
    means = torch.stack([pool[split.pool.labels == c].mean(0) for c in range(5)])
    predicted = torch.cdist(test, means).argmin(1).numpy()
    assert (predicted == split.test.labels).mean() >= 0.9


# -- decoding files ---------------------------------------------------------------------------


def _save(tmp_path: Path, name: str, pixels: np.ndarray, mode: str | None = None) -> str:
    path = tmp_path / name
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels, mode)
    image.save(path)
    return str(path)


def test_file_batches_are_the_official_evaluation_transform(data_root):
    split = load_dataset("pets", root=data_root)
    mean, std = IMAGENET_NORM
    for size in (24, 224):
        transform = transform_of(size, mean, std)
        official = T.Compose(
            [
                T.Resize(transform.input.resize_size),
                T.CenterCrop(size),
                T.ToTensor(),
                T.Normalize(mean, std),
            ]
        )
        expected = torch.stack(
            [official(Image.open(p).convert("RGB")) for p in split.pool.paths[:4]]
        )
        torch.testing.assert_close(split.pool.batch(np.arange(4), transform), expected)
    assert transform_of(224, mean, std).input.resize_size == 256


def test_a_constant_image_normalises_to_its_colour(tmp_path):
    colour = np.array([10, 128, 250], dtype=np.uint8)
    path = _save(tmp_path, "flat.png", np.broadcast_to(colour, (30, 50, 3)).copy())
    images = FileImageSet((path,), np.zeros(1, dtype=np.int64), 1)
    mean, std = IMAGENET_NORM
    batch = images.batch(np.array([0]), transform_of(16, mean, std))
    expected = (torch.tensor(colour / 255.0, dtype=torch.float32) - torch.tensor(mean)) / (
        torch.tensor(std)
    )
    torch.testing.assert_close(batch, expected.view(1, 3, 1, 1).expand(1, 3, 16, 16))


@pytest.mark.parametrize("tall", [False, True])
def test_the_crop_takes_the_centre_of_a_non_square_image(tmp_path, tall):
    bands = np.zeros((20, 80, 3), dtype=np.uint8)
    bands[:, :20, 0] = 255  # red | green (the middle half) | blue
    bands[:, 20:60, 1] = 255
    bands[:, 60:, 2] = 255
    pixels = bands.transpose(1, 0, 2).copy() if tall else bands
    images = FileImageSet((_save(tmp_path, "bands.png", pixels),), np.zeros(1, np.int64), 1)
    batch = images.batch(np.array([0]), transform_of(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    torch.testing.assert_close(batch, green, atol=1 / 255, rtol=0)


def test_grey_rgba_png_and_jpeg_files_become_rgb_batches_in_index_order(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    paths = (
        _save(tmp_path, "grey.png", grey),
        _save(tmp_path, "alpha.png", rgba, "RGBA"),
        _save(tmp_path, "colour.jpg", rgb),
        _save(tmp_path, "grey.jpg", grey),
    )
    images = FileImageSet(paths, np.arange(4, dtype=np.int64), 4)
    batch = images.batch(np.arange(4), transform_of(20, *HALF))
    assert batch.shape == (4, 3, 20, 20) and batch.dtype == torch.float32
    for row in (0, 3):
        assert torch.equal(batch[row, 0], batch[row, 1]) and torch.equal(
            batch[row, 0], batch[row, 2]
        )
    opaque = FileImageSet((_save(tmp_path, "opaque.png", rgba[..., :3]),), np.zeros(1, np.int64), 1)
    torch.testing.assert_close(
        batch[1:2], opaque.batch(np.array([0]), transform_of(20, *HALF))
    )  # alpha dropped
    reordered = images.batch(np.array([2, 0, 3, 1]), transform_of(20, *HALF))
    torch.testing.assert_close(reordered, batch[[2, 0, 3, 1]])
    assert images.batch(np.array([], dtype=np.int64), transform_of(20, *HALF)).shape == (
        0,
        3,
        20,
        20,
    )
    assert len(images) == 4


# -- the embedded default ---------------------------------------------------------------------


def _previous_batch(images: np.ndarray, indices: np.ndarray, size: int, mean, std):
    """The formula of the in-memory ImageSet before file-backed sets existed (grey images)."""
    pixels = (
        torch.from_numpy(images[indices]).float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    )
    if size != images.shape[-1]:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_mnist5k_ignores_the_root_and_its_batches_are_unchanged(tmp_path):
    split = load_dataset(
        "mnist5k", root=tmp_path / "absent", download=True, test_size=100, pool_size=200
    )
    images, labels = _mnist5k_arrays()
    pool, _ = stratified_split(labels, 100, 0)
    _, kept = stratified_split(labels[pool], 200, 1)
    pool = pool[kept]
    assert isinstance(split.pool, ArrayImageSet)
    np.testing.assert_array_equal(split.pool.labels, labels[pool])
    rows = np.array([5, 0, 199, 42])
    for size, (mean, std) in ((28, HALF), (32, HALF), (64, IMAGENET_NORM)):
        assert torch.equal(
            split.pool.batch(rows, transform_of(size, mean, std)),
            _previous_batch(images[pool], rows, size, mean, std),
        )
