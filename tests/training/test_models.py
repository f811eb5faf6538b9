"""Networks: the classifier's outputs, and a UAE that is the same for the same seed in any process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from configs.schema import ModelConfig
from tasks.training.models import LAST_CONV_LAYER, build_classifier, build_uae

UAE_PROBE = """
import numpy as np
from tasks.training.models import build_uae
np.random.seed(123)  # unrelated random state must not matter
x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3)).astype("float32")
print(repr(build_uae((28, 28), 8, seed=7)(x).numpy().round(6).tolist()))
"""


def test_uae_is_deterministic_for_a_seed_across_processes() -> None:
    outputs = [
        subprocess.run([sys.executable, "-c", UAE_PROBE], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert outputs[0] == outputs[1] and outputs[0].startswith("[[")


def test_uae_differs_between_seeds() -> None:
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3)).astype("float32")
    a, b = (build_uae((28, 28), 8, seed=s)(x).numpy() for s in (1, 2))
    assert a.shape == (4, 8) and not np.allclose(a, b)


def test_classifier_outputs_probabilities_and_names_last_conv() -> None:
    model = build_classifier(ModelConfig(name="demo"), num_classes=10)
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 3)).astype("float32")
    probabilities = model(x).numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    explained = model.get_layer(LAST_CONV_LAYER)  # what Grad-CAM differentiates: a spatial feature map
    assert len(explained.output.shape) == 4 and explained.output.shape[1:3] == (14, 14)


def test_mobilenet_builds_from_random_weights() -> None:
    config = ModelConfig(name="demo", architecture="mobilenet_v2", input_size=(32, 32))
    model = build_classifier(config, num_classes=4)
    assert model.output_shape == (None, 4)
