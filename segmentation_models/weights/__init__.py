"""Pretrained weights: registry, verified download with mirror and cache, loading by layer name."""

from .download import MIRROR_ENV, WeightsDownloadError, cache_dir, fetch_weights, file_hash
from .loading import (
    WeightsMismatchError,
    adapt_first_conv_kernel,
    align_weights_by_order,
    assign_weights_by_name,
    cycle_channels,
    input_channel_adapter,
    load_weights_file,
    read_h5_weights,
)
from .registry import REGISTRY_ENV, WeightsEntry, available_weights, get_weights_entry, register_weights

__all__ = [
    "MIRROR_ENV",
    "REGISTRY_ENV",
    "WeightsDownloadError",
    "WeightsMismatchError",
    "WeightsEntry",
    "assign_weights_by_name",
    "available_weights",
    "cache_dir",
    "fetch_weights",
    "file_hash",
    "get_weights_entry",
    "load_weights_file",
    "read_h5_weights",
    "register_weights",
    "adapt_first_conv_kernel",
    "align_weights_by_order",
    "cycle_channels",
    "input_channel_adapter",
]
