"""Segmentation data: data sets of image/mask files, joint augmentation, and a loader for `fit`.

from segmentation_models import data
train = data.from_camvid("../shared/data/camvid", "train")
loader = data.SegmentationLoader(train, batch_size=8, preprocessing="resnet18", training=True, crop_size=256)
model.fit(loader, epochs=10, shuffle=False)
"""

from .augment import STRIDE, pad_to_multiple, rescale, train_augmentation
from .datasets import (
    CAMVID_CLASSES,
    CAMVID_COLORS,
    SegmentationDataset,
    default_colors,
    from_camvid,
    from_folders,
    from_pairs,
    is_camvid,
    load_palette,
)
from .io import IGNORE, IMAGE_EXTENSIONS, DataError, MaskFormat, list_images, read_image, read_mask
from .loader import SegmentationLoader, one_hot_targets

__all__ = [
    "SegmentationDataset",
    "SegmentationLoader",
    "MaskFormat",
    "DataError",
    "IGNORE",
    "IMAGE_EXTENSIONS",
    "STRIDE",
    "from_folders",
    "from_camvid",
    "from_pairs",
    "is_camvid",
    "load_palette",
    "read_image",
    "read_mask",
    "list_images",
    "train_augmentation",
    "rescale",
    "pad_to_multiple",
    "one_hot_targets",
    "default_colors",
    "CAMVID_CLASSES",
    "CAMVID_COLORS",
]
