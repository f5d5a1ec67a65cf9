"""What every architecture builder shares: argument checks, encoder, head, freezing, weights."""
from __future__ import annotations

import keras

from ..backbones.factory import Encoder, build_encoder, freeze_encoder
from ..validation import check_activation, check_classes
from ..weights import load_weights_file


def start(backbone_name, input_shape, classes, activation, encoder_weights, size_multiple=32, **kwargs) -> Encoder:
    """Validate the common arguments and build the encoder."""
    check_classes(classes)
    check_activation(activation)
    return build_encoder(backbone_name, input_shape=input_shape, encoder_weights=encoder_weights,
                         size_multiple=size_multiple, **kwargs)


def finish(encoder: Encoder, outputs, name: str, weights=None, encoder_freeze: bool = False) -> keras.Model:
    """Make the model, freeze the encoder if asked, load full-model ``weights`` if given."""
    model = keras.Model(encoder.input, outputs, name=name)
    if encoder_freeze:
        freeze_encoder(encoder.model)
    if weights is not None:
        load_weights_file(model, weights)
    return model
