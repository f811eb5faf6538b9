"""One pydantic schema for every config file.

Every section uses ``extra="forbid"`` so that a misspelt key is an error naming the key and the
file, not a silently ignored setting. Relative paths resolve against the repository root, so the
shipped configs hold no machine-specific paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Direction = Literal["lower", "upper"]
# A threshold reads {metric: [value, "lower" | "upper"]}: "lower" means the value is a lower bound
# (the metric must be at least the value), "upper" an upper bound (at most the value).
Threshold = tuple[float, Direction]
_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


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


class DatasetConfig(StrictModel):
    """Which dataset, at which DVC revision, and how its splits are named."""

    path: Path = Field(Path("datasets/fashion-mnist"), validate_default=True)
    revision: str = Field(min_length=1, description="git tag or commit of the dataset repository")
    checkout: bool = Field(True, description="check out the revision when the working copy differs")
    allow_modified: bool = Field(False, description="train on a working copy that differs from revision")
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    limit_per_split: PositiveInt | None = Field(None, description="use at most this many images per split")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @field_validator("path")
    @classmethod
    def _resolve_against_repo(cls, value: Path) -> Path:
        return value if value.is_absolute() else (REPO_ROOT / value)


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


class TrainConfig(StrictModel):
    epochs: PositiveInt = 15
    batch_size: PositiveInt = 128
    learning_rate: Annotated[float, Field(gt=0.0)] = 1e-3
    seed: int = 42
    shuffle_buffer: PositiveInt = 10_000
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    augmentation: list[AugmenterConfig] = Field(default_factory=list)
    drift: DriftDetectorConfig = Field(default_factory=DriftDetectorConfig)
    experiment: str = Field("image-classification", min_length=1)


def _check_thresholds(thresholds: dict[str, Threshold]) -> dict[str, Threshold]:
    for metric in thresholds:
        if not re.fullmatch(r"[A-Za-z0-9_]+(/[A-Za-z0-9_ -]+)?", metric):
            raise ValueError(f"threshold name {metric!r} must read 'metric' or 'metric/class'")
    return thresholds


Thresholds = Annotated[dict[str, Threshold], AfterValidator(_check_thresholds)]


class EvaluateConfig(StrictModel):
    """The quality gate: {metric: [value, "lower" | "upper"]}, per-class metrics as 'recall/coat'."""

    split: str = "test"
    thresholds: Thresholds = Field(default_factory=dict)


class DeployConfig(StrictModel):
    """Promotion rule: the challenger may trail the champion by at most ``margin`` on ``metric``."""

    metric: str = "accuracy"
    margin: Annotated[float, Field(ge=0.0)] = 0.005
    monitor_cron: str = "0 6 * * 1"
    reload_urls: list[str] = Field(default_factory=list)


class MonitorConfig(StrictModel):
    """The weekly drift and performance check on served predictions."""

    window_size: PositiveInt | None = 2000
    window_days: PositiveInt | None = None
    p_value: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    min_labelled: PositiveInt = 50
    thresholds: Thresholds = Field(default_factory=dict)
    webhook_url: str | None = None
    retrain_on_drift: bool = False
    retrain_deployment: str = Field("full/full-flow", description="flow-name/deployment-name run on an alarm")


class FlowConfig(StrictModel):
    """The whole file: which flow runs, and the sections it reads."""

    flow_module: str = Field(pattern=r"^flows\.[a-z_]+$", description="e.g. flows.train_flow")
    model: ModelConfig
    dataset: DatasetConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)


def load_config(path: Path | str, overrides: list[str] | None = None) -> FlowConfig:
    """Read a YAML config, apply ``section.key=value`` overrides and validate it.

    Raises ConfigError naming the file and every offending key path.
    """
    path = Path(path)
    raw = _read_yaml(path)
    for override in overrides or []:
        _apply_override(raw, override, path)
    try:
        return FlowConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, path)) from None


def resolve_config(config: FlowConfig | None, config_file: str) -> FlowConfig:
    """A flow's config: the one given (run_flow.py), or the file named (Prefect deployments), repo-relative."""
    if config is not None:
        return config
    if not config_file:
        raise ConfigError("a flow needs either config or config_file")
    path = Path(config_file)
    return load_config(path if path.is_absolute() else REPO_ROOT / path)


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


def _apply_override(raw: dict[str, Any], override: str, path: Path) -> None:
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


def format_validation_error(error: ValidationError, path: Path) -> str:
    """One line per problem: file, dotted key path, what is wrong and what is expected."""
    lines = [f"{path}: {error.error_count()} invalid setting(s):"]
    for item in error.errors():
        key = _key_path(item["loc"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            lines.append(f"  {key}: unknown key; allowed here: {', '.join(allowed)}")
        elif item["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


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
