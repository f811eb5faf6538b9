"""Networks built from the config: the classifier and the untrained drift encoder (UAE).

Both take the shared preprocessing's uint8 RGB pixels (as float32) and scale them themselves,
so no caller can forget or repeat the scaling. Nothing is downloaded: MobileNetV2 starts from
random weights.
"""

from __future__ import annotations

import keras
from keras import layers

from configs.schema import ModelConfig
from tasks.core.bundle import CLASSIFIER_OUTPUT, EMBEDDING_LAYER, LAST_CONV_LAYER
from tasks.core.preprocessing import CHANNELS


def build_classifier(config: ModelConfig, num_classes: int) -> keras.Model:
    height, width = config.input_size
    inputs = keras.Input((height, width, CHANNELS), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    body = _small_cnn_body if config.architecture == "small_cnn" else _mobilenet_body
    x = body(x, config)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(config.dense_units, activation="relu", name=EMBEDDING_LAYER)(x)
    x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=CLASSIFIER_OUTPUT)(x)
    return keras.Model(inputs, outputs, name=f"{config.architecture}_classifier")


def _small_cnn_body(x: keras.KerasTensor, config: ModelConfig) -> keras.KerasTensor:
    """Conv-ReLU-pool blocks, then flatten: small enough to train Fashion-MNIST in minutes on 2 cores."""
    for block, filters in enumerate(config.filters):
        last = block == len(config.filters) - 1
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=LAST_CONV_LAYER if last else None)(x)
        x = layers.MaxPooling2D()(x)
    return layers.Flatten(name="flatten")(x)


def _mobilenet_body(x: keras.KerasTensor, config: ModelConfig) -> keras.KerasTensor:
    height, width = config.input_size
    backbone = keras.applications.MobileNetV2(
        input_shape=(height, width, CHANNELS), alpha=config.mobilenet_alpha, include_top=False, weights=None
    )
    # MobileNetV2 expects inputs in [-1, 1]; ours arrive in [0, 1].
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(x)
    x = backbone(x)
    x = layers.Activation("linear", name=LAST_CONV_LAYER)(x)
    return layers.GlobalAveragePooling2D(name="pool")(x)


def build_uae(input_size: tuple[int, int], encoding_dim: int, seed: int) -> keras.Model:
    """An untrained convolutional encoder: a fixed random projection that preserves image structure.

    Every initializer carries its own seed, so the same seed gives the same weights in any
    process, whatever else has drawn random numbers before.
    """
    height, width = input_size
    inputs = keras.Input((height, width, CHANNELS), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    for index, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(
            filters,
            4,
            strides=2,
            padding="same",
            activation="relu",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + index),
        )(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(
        encoding_dim, kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100), name="encoding"
    )(x)
    return keras.Model(inputs, outputs, name="uae_encoder")
