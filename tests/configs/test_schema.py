"""Config files: every shipped one validates; mistakes name the key, the file and what is expected."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from configs.schema import FlowConfig
from configs.schema import load_config as load
from tasks.core.errors import ConfigError
from tasks.core.settings import REPO_ROOT

SHIPPED = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
flow: train
model: {name: demo}
dataset: {revision: v2.0}
"""


def load_config(path: Path, overrides: list[str] | None = None) -> FlowConfig:
    """The loader as run_flow.py calls it: relative paths against the repository."""
    return load(path, overrides, root=REPO_ROOT)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_is_valid_and_has_no_absolute_path(path: Path) -> None:
    config = load_config(path)
    assert config.dataset.path.is_relative_to(REPO_ROOT)
    assert "/work/" not in path.read_text() and "/home/" not in path.read_text()


def test_config_misspelt_key_names_key_file_and_allowed_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL + "train: {epochz: 3}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert "train.epochz: unknown key" in message
    assert "epochs" in message  # what was probably meant


def test_config_wrong_type_says_what_is_expected(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL + "train: {epochs: ten}\n")
    with pytest.raises(ConfigError, match=r"train\.epochs: Input should be a valid integer.*'ten'"):
        load_config(path)


def test_config_missing_required_section_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "flow: train\nmodel: {name: demo}\n")
    with pytest.raises(ConfigError, match=r"dataset: required key is missing"):
        load_config(path)


def test_config_nested_list_error_has_index(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL + "train:\n  augmentation:\n    - {name: Fliplr, parms: {}}\n")
    with pytest.raises(ConfigError, match=r"train\.augmentation\[0\]\.parms: unknown key; allowed here: name, params"):
        load_config(path)


def test_config_threshold_must_name_direction(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL + "evaluate:\n  thresholds: {accuracy: [0.9, above]}\n")
    with pytest.raises(ConfigError, match=r"evaluate\.thresholds\.accuracy"):
        load_config(path)
    good = write_config(
        tmp_path, MINIMAL + "evaluate:\n  thresholds: {accuracy: [0.9, lower], recall/coat: [0.7, lower]}\n"
    )
    assert load_config(good).evaluate.thresholds["recall/coat"] == (0.7, "lower")


def test_config_overrides_are_parsed_as_yaml_and_validated(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)
    config = load_config(path, ["train.epochs=2", "dataset.limit_per_split=50", "model.filters=[8, 16]"])
    assert (config.train.epochs, config.dataset.limit_per_split, config.model.filters) == (2, 50, [8, 16])
    with pytest.raises(ConfigError, match=r"train\.epoch \(set in --set train\.epoch=2\): unknown key"):
        load_config(path, ["train.epoch=2"])
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        load_config(path, ["train.epochs"])


def test_config_relative_dataset_path_resolves_against_the_given_root(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL))
    assert config.dataset.path == REPO_ROOT / "datasets" / "fashion-mnist"
    assert load(write_config(tmp_path, MINIMAL), root=tmp_path).dataset.path == tmp_path / "datasets" / "fashion-mnist"


def test_thin_config_takes_the_experiment_from_the_file_it_extends(tmp_path: Path) -> None:
    base = write_config(tmp_path, MINIMAL.replace("flow: train", "flow: full") + "train: {epochs: 4, seed: 9}\n")
    thin = tmp_path / "thin.yaml"
    thin.write_text(f"extends: {base.name}\nflow: evaluate\ntrain: {{epochs: 2}}\n")
    config = load_config(thin)
    assert (config.flow, config.train.epochs, config.train.seed, config.model.name) == ("evaluate", 2, 9, "demo")


def test_shipped_flow_configs_differ_from_the_experiment_only_in_their_flow() -> None:
    experiment = load_config(REPO_ROOT / "configs" / "full_flow_config.yaml")
    for name, flow in [("train", "train"), ("eval", "evaluate"), ("deploy", "deploy"), ("monitor", "monitor")]:
        config = load_config(REPO_ROOT / "configs" / f"{name}_config.yaml")
        assert config.flow == flow and config.model_copy(update={"flow": "full"}) == experiment


def test_error_in_a_base_file_names_that_file(tmp_path: Path) -> None:
    base = write_config(tmp_path, MINIMAL + "train: {epochz: 4}\n")
    thin = tmp_path / "thin.yaml"
    thin.write_text(f"extends: {base.name}\nflow: evaluate\n")
    with pytest.raises(ConfigError) as error:
        load_config(thin)
    assert str(thin) in str(error.value) and f"train.epochz (set in {base}): unknown key" in str(error.value)


def test_extends_loop_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="'extends' makes a loop"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("evaluate: {thresholds: {acuracy: [0.9, lower]}}", "'acuracy' is not a metric evaluation computes"),
        ("evaluate: {thresholds: {ece: [0.05, lower]}}", "'ece' is better lower, so its bound must be 'upper'"),
        ("evaluate: {thresholds: {recall/coat: [0.7, upper]}}", "so its bound must be 'lower'"),
        ("deploy: {metric: acc}", "deploy.metric: 'acc' is not a metric evaluation computes"),
        ("monitor: {thresholds: {macro_auc: [0.9, lower]}}", "cannot be measured on served predictions"),
        ("deploy: {monitor_cron: '0 6 * *'}", "deploy.monitor_cron: '0 6 * *' is not a cron expression"),
        ("deploy: {monitor_cron: '0 25 * * 1'}", "is not a cron expression"),
    ],
)
def test_checks_that_would_fail_after_training_fail_at_load_time(tmp_path: Path, section: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(write_config(tmp_path, MINIMAL + section + "\n"))


def test_lower_is_better_promotion_metric_loads(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, MINIMAL + "deploy: {metric: ece, margin: 0.01}\n"))
    assert config.deploy.metric == "ece"


def test_config_mobilenet_rejects_too_small_input(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL.replace("{name: demo}", "{name: demo, architecture: mobilenet_v2}"))
    with pytest.raises(ConfigError, match=r"at least \[32, 32\]"):
        load_config(path)


def test_config_not_a_mapping_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write_config(tmp_path, "- just\n- a list\n"))


def run_cli(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    """run_flow.py as a user runs it, in a clean environment with its own state folder."""
    env = {"MLOPS_HOME": str(state), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "run_flow.py", "--config", str(config)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=60)


def test_run_flow_cli_refuses_misspelt_key_before_starting_anything(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO_ROOT / "configs" / "full_flow_config.yaml").read_text())
    raw["train"]["learning_rte"] = raw["train"].pop("learning_rate")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = run_cli(path, tmp_path / "state")
    assert result.returncode == 2
    assert f"{path}" in result.stderr and "train.learning_rte: unknown key" in result.stderr
    assert not (tmp_path / "state").exists()  # nothing was created


def test_run_flow_cli_rejects_unknown_augmenter(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL + "train:\n  augmentation:\n    - {name: Flipper}\n")
    result = run_cli(path, tmp_path / "state")
    assert result.returncode == 2
    assert "train.augmentation[0].name: 'Flipper' is not an imgaug augmenter" in result.stderr


def test_run_flow_cli_lists_tags_for_an_unknown_revision(tmp_path: Path, tiny_repo: Path) -> None:
    path = write_config(tmp_path, MINIMAL.replace("{revision: v2.0}", f"{{revision: v3.1, path: {tiny_repo}}}"))
    result = run_cli(path, tmp_path / "state")
    assert result.returncode == 2
    assert "dataset revision 'v3.1' not found" in result.stderr and "available tags: v1.0, v2.0" in result.stderr


def test_webhook_url_is_masked_wherever_the_config_is_shown(tmp_path: Path) -> None:
    from tasks.core.tracking import flatten

    url = "https://alerts.example.internal/hook?token=s3cr3t"
    config = load_config(write_config(tmp_path, MINIMAL), [f"monitor.webhook_url={url}"])
    assert config.monitor.webhook_url is not None and config.monitor.webhook_url.get_secret_value() == url
    shown = [config.model_dump_json(), str(flatten(config.model_dump(mode="json"))), repr(config)]
    assert not [text for text in shown if "s3cr3t" in text]
    written = config.model_dump(mode="json", context={"reveal_secrets": True})  # a config file written on purpose
    assert written["monitor"]["webhook_url"] == url
