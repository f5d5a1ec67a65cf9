"""Segmentation architectures: decoders on top of backbones, one module each."""

from .deeplab import DeepLabV3, DeepLabV3Plus
from .dpt import DPT
from .fpn import FPN
from .linknet import Linknet
from .manet import MAnet
from .pan import PAN
from .pspnet import PSPNet
from .segformer import SegFormer
from .unet import Unet
from .unetplusplus import UnetPlusPlus
from .upernet import UPerNet

# name -> builder; `create_model` and the command line look architectures up here (in this order).
ARCHITECTURES = {
    "Unet": Unet,
    "FPN": FPN,
    "Linknet": Linknet,
    "PSPNet": PSPNet,
    "UnetPlusPlus": UnetPlusPlus,
    "MAnet": MAnet,
    "PAN": PAN,
    "DeepLabV3": DeepLabV3,
    "DeepLabV3Plus": DeepLabV3Plus,
    "UPerNet": UPerNet,
    "SegFormer": SegFormer,
    "DPT": DPT,
}

__all__ = ["ARCHITECTURES", *ARCHITECTURES]
