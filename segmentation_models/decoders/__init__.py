"""Segmentation architectures (decoders on top of backbones)."""

from .unet import Unet

# name -> builder; `create_model` and the command line look architectures up here.
ARCHITECTURES = {"Unet": Unet}

__all__ = ["ARCHITECTURES", "Unet"]

# ---- 1.0.1's other architectures (FPN, Linknet, PSPNet) ----
from .fpn import FPN  # noqa: E402
from .linknet import Linknet  # noqa: E402
from .pspnet import PSPNet  # noqa: E402

ARCHITECTURES.update({"FPN": FPN, "Linknet": Linknet, "PSPNet": PSPNet})
__all__ += ["FPN", "Linknet", "PSPNet"]

# ---- segmentation_models_pytorch's architectures ------------------------------------------------------
from .deeplab import DeepLabV3, DeepLabV3Plus  # noqa: E402
from .manet import MAnet  # noqa: E402
from .pan import PAN  # noqa: E402
from .unetplusplus import UnetPlusPlus  # noqa: E402
from .upernet import UPerNet  # noqa: E402

ARCHITECTURES.update(
    {
        "UnetPlusPlus": UnetPlusPlus,
        "MAnet": MAnet,
        "PAN": PAN,
        "DeepLabV3": DeepLabV3,
        "DeepLabV3Plus": DeepLabV3Plus,
        "UPerNet": UPerNet,
    }
)
__all__ += ["UnetPlusPlus", "MAnet", "PAN", "DeepLabV3", "DeepLabV3Plus", "UPerNet"]

# ---- SegFormer ----
from .segformer import SegFormer  # noqa: E402

ARCHITECTURES["SegFormer"] = SegFormer
__all__ += ["SegFormer"]
