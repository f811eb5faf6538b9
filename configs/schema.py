"""One pydantic schema for every config file, parsed once at the edge.

Every section uses ``extra="forbid"``, so a misspelt key is an error naming the key and the file
instead of a silently ignored setting. A file may ``extends:`` another (a path relative to it):
the experiment lives in one file and a thin file picks another flow or changes a few keys.
Relative paths resolve against the root the loader is given (the repository), so the shipped
configs hold no machine-specific paths. Checks that would otherwise fail after training (metric
names, the direction of a bound, the promotion metric, the monitor's cron) fail here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from configs.metrics import TRUST_METRICS, is_live_metric, known_metrics, metric_direction
from tasks.core.errors import ConfigError

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Bound = Literal["lower", "upper"]
# A threshold reads {metric: [value, "lower" | "upper"]}: "lower" means the value is a lower bound
# (the metric must be at least the value), "upper" an upper bound (at most the value).
Threshold = tuple[float, Bound]
Thresholds = dict[str, Threshold]  # the one type of a set of thresholds, for the gate and the monitor
FlowName = Literal["train", "evaluate", "deploy", "full", "monitor", "add-reviews"]
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_SIDE_OF_BETTER = {"higher": "lower", "lower": "upper"}  # the bound that keeps bad models out


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(StrictModel):
    """The network and the name it is registered and published under."""

    name: str = Field(pattern=_NAME_PATTERN, description="registry and central-storage name")
    architecture: Literal["small_cnn", "mobilenet_v2"] = "small_cnn"
    input_size: tuple[PositiveInt, PositiveInt] = (28, 28)
    filters: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    dense_units: PositiveInt = 128
    dropout: Fraction = 0.3
    mobilenet_alpha: Annotated[float, Field(gt=0.0)] = 0.35
    intended_use: str = Field(
        "Not stated: set model.intended_use to what the model is for and who acts on its answers.",
        description="the model card's intended use",
    )
    limitations: list[str] = Field(default_factory=list, description="the model card's known limits, one per item")

    @model_validator(mode="after")
    def _mobilenet_needs_32_pixels(self) -> ModelConfig:
        if self.architecture == "mobilenet_v2" and min(self.input_size) < 32:
            raise ValueError("mobilenet_v2 needs input_size of at least [32, 32]")
        return self


class ValidationConfig(StrictModel):
    """Deepchecks data validation: which suites run and which failed conditions stop the run."""

    enabled: bool = True
    sample_size: PositiveInt = 100_000
    stop_on_failure: bool = True
    max_duplicate_ratio: Fraction = 0.01
    max_train_test_leakage_ratio: Fraction = 0.01
    max_property_drift: Annotated[float, Field(gt=0.0)] = 0.2
    max_label_drift: Annotated[float, Field(gt=0.0)] = 0.1
    min_samples_per_class: PositiveInt = 5


class ReviewsConfig(StrictModel):
    """Reviewed labels as data: ``mlops dataset add-reviews`` writes them, training reads them."""

    split: str = Field("reviewed", pattern=r"^[A-Za-z0-9_-]+$", description="the split reviewed images go to")
    train_on: bool = Field(True, description="train on the reviewed split beside train_split")
    min_new_labels: PositiveInt = Field(100, description="refuse a new revision with fewer agreed new labels")
    screening: bool = Field(True, description="send reviewed labels the model confidently doubts to a second review")


class DatasetConfig(StrictModel):
    """Which dataset, at which DVC revision, and how its splits are named."""

    path: Path = Field(Path("datasets/fashion-mnist"), validate_default=True)
    revision: str = Field(
        min_length=1, description="git tag or commit of the dataset repository; latest: its newest tagged revision"
    )
    checkout: bool = Field(True, description="check out the revision when the working copy differs")
    allow_modified: bool = Field(False, description="train on a working copy that differs from revision")
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    limit_per_split: PositiveInt | None = Field(None, description="use at most this many images per split")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    reviews: ReviewsConfig = Field(default_factory=ReviewsConfig)

    @model_validator(mode="after")
    def _reviews_have_a_split_of_their_own(self) -> DatasetConfig:
        if self.reviews.split in (self.validation_split, self.test_split):
            raise ValueError(
                f"reviews.split {self.reviews.split!r} is also a validation or test split; reviewed images "
                "need a split of their own, so the held-out splits stay untouched"
            )
        return self

    @field_validator("path")
    @classmethod
    def _resolve_against_root(cls, value: Path, info: ValidationInfo) -> Path:
        root = (info.context or {}).get("root")
        return value if value.is_absolute() or root is None else Path(root) / value


class AugmenterConfig(StrictModel):
    """One imgaug augmenter: a class of ``imgaug.augmenters`` and its keyword arguments."""

    name: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    params: dict[str, Any] = Field(default_factory=dict)


class EarlyStoppingConfig(StrictModel):
    monitor: str = "val_accuracy"
    patience: PositiveInt = 3
    min_delta: Annotated[float, Field(ge=0.0)] = 0.001


class DriftDetectorConfig(StrictModel):
    """The drift detectors published with the model and their reference features."""

    uae_dim: PositiveInt = 32
    reference_split: str = "validation"
    reference_rows: PositiveInt = 5000


class TrustConfig(StrictModel):
    """Fitted on a calibration share of ``split`` that early stopping never sees, published with the version:
    temperature scaling, conformal prediction sets, the out-of-distribution threshold, when to abstain."""

    enabled: bool = True
    split: str = "validation"
    share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    alpha: Annotated[float, Field(gt=0.0, lt=1.0, description="miscoverage of the prediction sets")] = 0.05
    class_conditional: bool = Field(False, description="one set threshold per class: coverage for every class")
    ood_score: Literal["mahalanobis_or_energy", "mahalanobis", "energy", "max_softmax"] = "mahalanobis_or_energy"
    ood_false_positive_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    feature_rows: PositiveInt = Field(10_000, description="training images the class means and covariance come from")
    max_set_size: PositiveInt | None = Field(3, description="abstain when the prediction set is larger")
    shift_windows: NonNegativeInt = Field(
        1600, description="synthetic shifted windows the accuracy estimate learns from (0: average confidence only)"
    )
    shift_window_rows: PositiveInt = Field(300, description="calibration images in each synthetic window")


class TrainConfig(StrictModel):
    epochs: PositiveInt = 15
    batch_size: PositiveInt = 128
    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-3
    seed: int = 42
    shuffle_buffer: PositiveInt = 10_000
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    augmentation: list[AugmenterConfig] = Field(default_factory=list)
    drift: DriftDetectorConfig = Field(default_factory=DriftDetectorConfig)
    trust: TrustConfig = Field(default_factory=TrustConfig)
    screen_labels: bool = Field(True, description="report likely label errors of the training set and queue them")
    experiment: str = Field("image-classification", min_length=1)


def _check_gate_thresholds(thresholds: Thresholds) -> Thresholds:
    """Every name is a metric evaluation computes, bounded on the side that keeps worse models out."""
    for metric, (_, bound) in thresholds.items():
        better = metric_direction(metric)
        if better is None:
            raise ValueError(f"{metric!r} is not a metric evaluation computes; use one of {known_metrics()}")
        if bound != _SIDE_OF_BETTER[better]:
            raise ValueError(
                f"{metric!r} is better {better}, so its bound must be {_SIDE_OF_BETTER[better]!r}, not {bound!r}"
            )
    return thresholds


def _check_live_thresholds(thresholds: Thresholds) -> Thresholds:
    """Only what labelled served predictions can measure: accuracy and per-class recall."""
    for metric in thresholds:
        if not is_live_metric(metric):
            raise ValueError(f"{metric!r} cannot be measured on served predictions; use accuracy or recall/<class>")
    return _check_gate_thresholds(thresholds)


GateThresholds = Annotated[Thresholds, AfterValidator(_check_gate_thresholds)]
LiveThresholds = Annotated[Thresholds, AfterValidator(_check_live_thresholds)]


def _check_cron(expression: str) -> str:
    try:
        CronSim(expression, datetime.now(UTC))
    except CronSimError as error:
        raise ValueError(
            f"{expression!r} is not a cron expression ({error}); e.g. '0 6 * * 1' for Mondays 06:00"
        ) from None
    return expression


class EvaluateConfig(StrictModel):
    """The quality gate: {metric: [value, "lower" | "upper"]}, per-class metrics as 'recall/coat'."""

    split: str = "test"
    thresholds: GateThresholds = Field(default_factory=dict)


class ShadowConfig(StrictModel):
    """Shadow before promotion: a challenger that passes the offline gate first runs beside the champion
    on live traffic (every service replica, off the response path), and is promoted by a later deploy run
    only when enough shadow predictions agree with the champion's and, where labels arrived, it is not
    less accurate on them."""

    enabled: bool = False
    sample: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    min_predictions: PositiveInt = 1000
    min_agreement: Fraction | None = Field(
        0.9, description="the agreement's one-sided lower confidence bound must reach it; null: not required"
    )
    accuracy_margin: Annotated[float, Field(ge=0.0)] | None = Field(
        None, description="paired accuracy on feedback labels: lower bound above -margin; null: not required"
    )
    min_labelled: PositiveInt = 100


class DeployConfig(StrictModel):
    """Promotion rule: champion and challenger predict the same split, and the challenger is promoted only
    when the one-sided ``confidence`` lower bound of its paired difference on ``metric`` is above
    ``-margin`` (difference oriented so positive is better: higher accuracy, lower ece), and on every
    slice (each class, brightness and contrast terciles) above ``-slice_margin``."""

    metric: str = "accuracy"
    margin: Annotated[float, Field(ge=0.0)] = 0.005
    confidence: Annotated[float, Field(ge=0.5, lt=1.0)] = 0.95
    slice_margin: Annotated[float, Field(ge=0.0)] | None = Field(
        0.03, description="per slice; null: judge the whole split only"
    )
    min_slice_rows: PositiveInt = Field(30, description="smaller slices are reported, not judged")
    resamples: Annotated[int, Field(ge=100)] = 2000
    monitor_cron: Annotated[str, AfterValidator(_check_cron)] = "0 6 * * 1"
    reload_urls: list[str] = Field(default_factory=list)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric_direction(metric) is None:
            raise ValueError(f"{metric!r} is not a metric evaluation computes; use one of {known_metrics()}")
        if metric.split("/")[0] in TRUST_METRICS:
            raise ValueError(
                f"{metric!r} needs the trust layer's sets or flags; compare on a metric of the predictions"
            )
        return metric


class MonitorConfig(StrictModel):
    """The weekly drift and performance check on served predictions."""

    @field_serializer("webhook_url", when_used="json")
    def _mask_unless_asked(self, url: SecretStr | None, info: SerializationInfo) -> str | None:
        """Masked in MLflow params, Prefect parameters and logs; written out only on request (a config file)."""
        if url is None:
            return None
        return url.get_secret_value() if (info.context or {}).get("reveal_secrets") else str(url)

    window_size: PositiveInt | None = 2000
    window_days: PositiveInt | None = None
    p_value: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    min_labelled: PositiveInt = 50
    thresholds: LiveThresholds = Field(default_factory=dict)
    webhook_url: SecretStr | None = Field(None, description="often carries a token: masked wherever it is shown")
    accuracy_estimator: Literal["shift_regression", "average_confidence", "atc"] = Field(
        "shift_regression",
        description="how the window's accuracy is estimated before labels (average confidence for a version "
        "published without a shift regression)",
    )
    retrain_on_drift: bool = False
    retrain_deployment: str = Field("full/full-flow", description="flow-name/deployment-name run on an alarm")
    retrain_revision: str = Field(
        "latest", min_length=1, description="the dataset revision retraining uses: latest takes in new reviews"
    )


class FlowConfig(StrictModel):
    """The whole file: which flow runs, and the sections it reads."""

    flow: FlowName = Field(
        description="which flow run_flow.py runs: train, evaluate, deploy, full, monitor or add-reviews"
    )
    model: ModelConfig
    dataset: DatasetConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @property
    def experiment(self) -> str:
        """The MLflow experiment every flow of this config reports to."""
        return self.train.experiment

    @property
    def model_name(self) -> str:
        return self.model.name


def load_config(path: Path | str, overrides: list[str] | None = None, root: Path | None = None) -> FlowConfig:
    """Read a YAML config (and the files it extends), apply ``section.key=value`` overrides, validate it.

    Relative paths in it resolve against ``root``. Raises ConfigError naming every offending key
    path and the file that set it.
    """
    path = Path(path)
    raw, origins = _read_with_bases(path, [])
    for override in overrides or []:
        key = _apply_override(raw, override, path)
        origins[key] = f"--set {override}"
    try:
        return FlowConfig.model_validate(raw, context={"root": root})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, path, origins)) from None


def resolve_config(
    config: FlowConfig | None, config_file: str, root: Path, overrides: list[str] | None = None
) -> FlowConfig:
    """A flow's config: the one given (run_flow.py), or the file named with ``overrides`` applied
    (Prefect deployments: the UI's run form edits both), root-relative."""
    if config is not None:
        if overrides:
            raise ConfigError("overrides apply to config_file; a flow given a whole config takes it as it is")
        return config
    if not config_file:
        raise ConfigError("a flow needs either config or config_file")
    path = Path(config_file)
    return load_config(path if path.is_absolute() else root / path, overrides or [], root=root)


Origins = dict[tuple[str, ...], str]  # key path -> the file (or --set) that set it


def _read_with_bases(path: Path, chain: list[Path]) -> tuple[dict[str, Any], Origins]:
    """The file merged over the files it extends, and which file set each key."""
    if path.resolve() in chain:
        raise ConfigError(f"{path}: 'extends' makes a loop: {' -> '.join(str(p) for p in [*chain, path])}")
    raw = _read_yaml(path)
    base_name = raw.pop("extends", None)
    if base_name is None:
        return raw, _origins_of(raw, str(path))
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: extends: expected the path of another config file, got {base_name!r}")
    base, origins = _read_with_bases(path.parent / base_name, [*chain, path.resolve()])
    _merge(base, raw)
    origins.update(_origins_of(raw, str(path)))
    return base, origins


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    """Mappings merge key by key; anything else (lists included) replaces what the base had."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _origins_of(raw: dict[str, Any], source: str, prefix: tuple[str, ...] = ()) -> Origins:
    origins: Origins = {}
    for key, value in raw.items():
        origins[(*prefix, str(key))] = source
        if isinstance(value, dict):
            origins.update(_origins_of(value, source, (*prefix, str(key))))
    return origins


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def _apply_override(raw: dict[str, Any], override: str, path: Path) -> tuple[str, ...]:
    """Set ``a.b.c=value`` in the raw mapping; the value is parsed as YAML (so 3 is an int)."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected section.key=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: --set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(value) if value else None
    return tuple(parts)


def format_validation_error(error: ValidationError, path: Path, origins: Origins | None = None) -> str:
    """One line per problem: dotted key path, what is wrong and what is expected, and the file
    that set the key when it is not ``path`` itself (a base file, or --set)."""
    lines = [f"{path}: {error.error_count()} invalid setting(s):"]
    for item in error.errors():
        key = _key_path(item["loc"])
        source = _origin(item["loc"], origins or {})
        where = f" (set in {source})" if source and source != str(path) else ""
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            lines.append(f"  {key}{where}: unknown key; allowed here: {', '.join(allowed)}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            lines.append(f"  {key}{where}: {message} (got {item.get('input')!r})")
    return "\n".join(lines)


def _origin(loc: tuple[int | str, ...], origins: Origins) -> str | None:
    """The file that set the deepest mapping key on ``loc``."""
    keys = tuple(str(part) for part in loc if isinstance(part, str))
    for end in range(len(keys), 0, -1):
        if keys[:end] in origins:
            return origins[keys[:end]]
    return None


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _allowed_keys(parent_loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model at ``parent_loc``, to suggest what was meant."""
    model: type[BaseModel] = FlowConfig
    for part in parent_loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        inner = _model_in(annotation)
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
