"""The served model: a verified version from central storage, its predictor and Grad-CAM explainer.

Nothing here knows about HTTP. ``ModelManager`` holds the current version and swaps it by
replacing one reference, so a batch that started on the old version finishes on it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.dl_service.images import CheckedImage
from tasks.core.bundle import EMBEDDING_LAYER, LAST_CONV_LAYER, ModelBundle, fetch_bundle
from tasks.core.errors import IntegrityError, MlopsError
from tasks.core.pointer import read_pointer
from tasks.core.preprocessing import preprocess
from tasks.core.shadow_pointer import read_shadow
from tasks.core.trust import TrustModel

logger = logging.getLogger(__name__)


def share_cores(inference_threads: int, workers: int) -> int | None:
    """TensorFlow's threads in this process: as set, or the machine's cores shared among the worker processes.
    With one worker, None: TensorFlow's default (every core). Measured with two workers on two cores, one
    thread each spends a quarter less CPU per image than two each fighting over both cores (BENCHMARKS.md)."""
    if inference_threads:
        return inference_threads
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


def limit_inference_threads(threads: int | None) -> None:
    """Set before TensorFlow runs anything; a process where it already has (tests) keeps its threads."""
    if threads is None:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning("TensorFlow is already running in this process: its thread counts stay as they are")


class ModelUnavailable(MlopsError):
    """No model is loaded yet; the reason says why."""


@dataclass(frozen=True)
class Inference:
    """One batch through the model: what every answer and log row is made of."""

    probabilities: np.ndarray  # (N, C) calibrated when the version has a trust layer
    features: np.ndarray  # (N, D) UAE features, for drift
    in_set: np.ndarray | None  # (N, C) conformal prediction sets; None without a trust layer
    ood_scores: np.ndarray | None  # (N,) higher: less like the training data


NO_TRUST_FIELDS: dict[str, Any] = {
    "prediction_set": None,
    "ood_score": None,
    "ood": None,
    "abstain": False,
    "abstain_reason": None,
}


class ServedModel:
    """One loaded version: batched prediction (softmax + UAE features, and with a trust layer calibrated
    probabilities, prediction sets and out-of-distribution scores) and Grad-CAM."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.name, self.version = bundle.name, bundle.version
        self.class_names, self.input_spec = bundle.class_names, bundle.input_spec
        self.classifier, self.encoder = bundle.load_classifier(), bundle.load_encoder()
        self.trust: TrustModel | None = bundle.load_trust()
        self.max_set_size: int | None = (bundle.metadata.get("trust") or {}).get("max_set_size")
        # With a trust layer the graph also returns the penultimate features: logits and OOD come from them.
        outputs = [self.classifier.output]
        if self.trust is not None:
            outputs.append(self.classifier.get_layer(EMBEDDING_LAYER).output)
        self._outputs_model = keras.Model(self.classifier.inputs, outputs)
        # One graph per version, both networks on a batch of uint8 images (decoded by the checks).
        spec = self.input_spec
        batch_spec = tf.TensorSpec([None, spec.height, spec.width, 3], tf.uint8)
        self._infer = tf.function(self._forward, input_signature=[batch_spec])
        # Without the UAE (drift features): what a shadow run needs. Traced on its first call only.
        self._infer_outputs = tf.function(self._forward_outputs, input_signature=[batch_spec])
        # Built once per version: the gradient model Grad-CAM differentiates.
        self._gradient_model = keras.Model(
            self.classifier.inputs, [self.classifier.get_layer(LAST_CONV_LAYER).output, self.classifier.output]
        )

    def _forward(self, images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        inputs = tf.cast(images, tf.float32)
        return (*self._forward_outputs(images), self.encoder(inputs, training=False))

    def _forward_outputs(self, images: tf.Tensor) -> tuple[tf.Tensor, ...]:
        outputs = self._outputs_model(tf.cast(images, tf.float32), training=False)
        return tuple(outputs) if isinstance(outputs, list | tuple) else (outputs,)

    def predict(self, images: np.ndarray, with_features: bool = True) -> Inference:
        """uint8 model inputs (N, H, W, 3) -> probabilities, UAE features (empty when not ``with_features``)
        and, with a trust layer, sets and OOD."""
        infer = self._infer if with_features else self._infer_outputs
        outputs = [output.numpy() for output in infer(tf.constant(images, dtype=tf.uint8))]
        features = outputs[-1] if with_features else np.empty((len(images), 0), dtype=np.float32)
        if self.trust is None:
            return Inference(outputs[0], features, None, None)
        embedding = outputs[1].astype(np.float64)
        logits = self.trust.logits(embedding)
        probabilities = self.trust.calibrated(logits)
        return Inference(
            probabilities, features, self.trust.sets(probabilities), self.trust.ood_scores(embedding, logits)
        )

    def trust_fields(self, inference: Inference) -> list[dict[str, Any]]:
        """Per image: the prediction set (most probable first), the out-of-distribution score and flag, and
        whether to abstain, with the reason. Built for the whole batch in the inference thread, once: the
        answer and the log row share it. A version without a trust layer never abstains."""
        count = len(inference.probabilities)
        trust = self.trust
        if trust is None or inference.in_set is None or inference.ood_scores is None:
            return [dict(NO_TRUST_FIELDS) for _ in range(count)]
        order = np.argsort(-inference.probabilities, axis=1, kind="stable")
        ranked_in = np.take_along_axis(inference.in_set, order, axis=1)
        sizes = ranked_in.sum(axis=1)
        flagged = inference.ood_scores > trust.ood_threshold
        too_many = sizes > self.max_set_size if self.max_set_size is not None else np.zeros(count, dtype=bool)
        names = self.class_names
        fields = []
        for row, ranking, members, score, ood, wide in zip(
            range(count),
            order.tolist(),
            ranked_in.tolist(),
            inference.ood_scores.tolist(),
            flagged,
            too_many,
            strict=True,
        ):
            reasons = []
            if ood:
                reasons.append(
                    f"out of distribution: {trust.ood_score} score {score:.4g} above the threshold "
                    f"{trust.ood_threshold:.4g}"
                )
            if wide:
                reasons.append(
                    f"{sizes[row]} classes are plausible at {1 - trust.alpha:.0%} (at most {self.max_set_size})"
                )
            fields.append(
                {
                    "prediction_set": [names[c] for c, member in zip(ranking, members, strict=True) if member],
                    "ood_score": round(score, 6),
                    "ood": bool(ood),
                    "abstain": bool(reasons),
                    "abstain_reason": "; ".join(reasons) or None,
                }
            )
        return fields

    def input_of(self, checked: CheckedImage) -> np.ndarray:
        """The checks decoded the image for the model that was current then; another input size re-decodes it."""
        spec = self.input_spec
        if checked.pixels is not None and checked.pixels.shape == (spec.height, spec.width, 3):
            return checked.pixels
        return preprocess(checked.content, spec)

    def explain(self, image: np.ndarray) -> np.ndarray:
        """Grad-CAM for the predicted class, which regions raised its score: HxW in [0, 1] at the input size."""
        batch = tf.cast(image[None, ...], tf.float32)
        with tf.GradientTape() as tape:
            activations, probabilities = self._gradient_model(batch, training=False)
            class_index = int(tf.argmax(probabilities[0]))
            score = probabilities[:, class_index]
        gradients = tape.gradient(score, activations)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]
        cam = cam / (tf.reduce_max(cam) + 1e-8)
        size = (self.input_spec.height, self.input_spec.width)
        heatmap = tf.image.resize(cam[..., None], size, method="bilinear")[..., 0].numpy()
        return np.clip(heatmap, 0.0, 1.0)

    def warm_up(self) -> None:
        """Trace the inference function now rather than on the first request."""
        self.predict(np.zeros((1, self.input_spec.height, self.input_spec.width, 3), dtype=np.uint8))


def load_served_model(
    storage_url: str,
    name: str,
    version: str,
    cache_dir: Path,
    expected_sums: str | None = None,
    verify_key: Ed25519PublicKey | None = None,
) -> ServedModel:
    """Load a version whose checksums verify and, given a ``verify_key``, whose signature does."""
    if verify_key is None:  # only the development mode gets here: production settings require the key
        logger.warning(
            "Loading %s version %s without checking its signature: set MLOPS_SERVICE_MODEL_VERIFY_KEY", name, version
        )
    bundle = fetch_bundle(storage_url, name, version, cache_dir, expected_sums, verify_key)  # verified first
    model = ServedModel(bundle)
    model.warm_up()
    return model


@dataclass(frozen=True)
class Shadow:
    """A version in shadow: it predicts ``sample`` of the micro-batches beside the production version."""

    model: ServedModel
    sample: float


@dataclass(frozen=True)
class ReloadResult:
    version: str | None
    changed: bool
    detail: str


class ModelManager:
    """Follows the production pointer; loads a new version beside the old one, then swaps."""

    def __init__(
        self,
        storage_url: str,
        name: str,
        cache_dir: Path,
        on_change: Callable[[str | None, str], None] | None = None,
        verify_key: Ed25519PublicKey | None = None,
        on_shadow_change: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        self.storage_url, self.name, self.cache_dir = storage_url, name, cache_dir
        self.on_change, self.on_shadow_change = on_change, on_shadow_change
        self.verify_key = verify_key  # None: versions load unsigned (development mode without a key)
        self._current: ServedModel | None = None
        self.shadow: Shadow | None = None  # replaced whole, like the current model
        self._refused_shadow: tuple[str, str] | None = None  # (version, SHA256SUMS digest) that failed to load
        self._load_lock = threading.Lock()
        self.unavailable_reason = "no model loaded yet"

    @property
    def current(self) -> ServedModel:
        model = self._current
        if model is None:
            raise ModelUnavailable(self.unavailable_reason)
        return model

    @property
    def loaded(self) -> bool:
        return self._current is not None

    @property
    def shadow_version(self) -> str | None:
        return self.shadow.model.version if self.shadow else None

    def refresh(self) -> ReloadResult:
        """Load the version the pointer names if it differs from the current one, then follow the shadow pointer.

        A pointer that is not valid, or a version whose checksums or signature fail, is refused and the current
        model kept; the reason is logged and raised (a reload request answers it with 409). A shadow that
        cannot be loaded is logged and dropped: it never stands in the way of serving.
        """
        with self._load_lock:
            try:
                return self._refresh_production()
            finally:
                self._follow_shadow()

    def _follow_shadow(self) -> None:
        before = self.shadow_version
        try:
            pointer = read_shadow(self.storage_url, self.name)
        except Exception as error:  # unreadable for now: keep what runs, look again at the next check
            logger.error("Cannot read the shadow pointer of %s: %s", self.name, error)
            return
        serving = self._current.version if self._current else None
        try:
            if pointer is None or pointer.version == serving:
                self.shadow = None  # none, or promoted meanwhile: the production model answers it already
            elif self.shadow is not None and pointer.version == before:
                self.shadow = Shadow(self.shadow.model, pointer.sample)
            elif (pointer.version, pointer.sums_sha256) != self._refused_shadow:
                model = load_served_model(
                    self.storage_url, self.name, pointer.version, self.cache_dir, pointer.sums_sha256, self.verify_key
                )
                self.shadow = Shadow(model, pointer.sample)
        except Exception as error:
            logger.error("No shadow for %s: %s", self.name, error)
            self.shadow = None
            if pointer is not None:  # not fetched and verified again at every check, by every replica
                self._refused_shadow = (pointer.version, pointer.sums_sha256)
        after = self.shadow_version
        if after != before:
            logger.info("Shadow of %s: version %s (was %s)", self.name, after, before)
            if self.on_shadow_change is not None:
                self.on_shadow_change(before, after)

    def _refresh_production(self) -> ReloadResult:
        current = self._current.version if self._current else None
        try:
            pointer = read_pointer(self.storage_url, self.name)
            if pointer is None:
                self.unavailable_reason = f"no production model for {self.name!r} yet: run the deploy flow"
                return ReloadResult(current, False, self.unavailable_reason)
            if pointer.version == current:
                return ReloadResult(current, False, f"version {current} already loaded")
            loaded = load_served_model(
                self.storage_url, self.name, pointer.version, self.cache_dir, pointer.sums_sha256, self.verify_key
            )
        except IntegrityError as error:
            logger.error("Refusing the production pointer of %s: %s", self.name, error)
            if self._current is None:
                self.unavailable_reason = f"the production version failed its integrity checks: {error}"
            raise
        self._current = loaded  # one reference swap: in-flight batches keep the model they hold
        logger.info("Serving %s version %s (was %s)", self.name, pointer.version, current)
        if self.on_change is not None:
            self.on_change(current, pointer.version)
        return ReloadResult(pointer.version, True, f"loaded version {pointer.version}")
