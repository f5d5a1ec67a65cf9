"""Segmentation architectures (decoders on top of backbones)."""
from .unet import Unet

# name -> builder; `create_model` and the command line look architectures up here.
ARCHITECTURES = {"Unet": Unet}

__all__ = ["ARCHITECTURES", "Unet"]

# ---- SegFormer ----
from .segformer import SegFormer  # noqa: E402

ARCHITECTURES["SegFormer"] = SegFormer
__all__ += ["SegFormer"]
