"""The image transform the tests decode with: ``size`` px, bilinear, the official crop fraction
(Resize 256 + CenterCrop 224), the given normalisation, no augmentation unless given."""

from asvp.data.transforms import NO_AUGMENTATION, Augmentation, ImageTransform, InputConfig


def transform_of(
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    augmentation: Augmentation = NO_AUGMENTATION,
) -> ImageTransform:
    return ImageTransform(InputConfig(size, "bilinear", 0.875, mean, std), augmentation)
