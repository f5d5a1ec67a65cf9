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
