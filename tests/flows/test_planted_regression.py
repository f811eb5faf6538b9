"""A regression planted in one class is refused by the full flow's gate, which names the class.

A new dataset revision mislabels most training trousers as dresses: the challenger learns to call
trousers dresses. Its overall accuracy falls less than the (here lenient) overall margin, so only the
per-class slice of the paired non-inferiority test can catch it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tasks.core.audit import read_history
from tasks.core.pointer import read_pointer
from tasks.core.settings import get_settings
from tasks.data.demo import commit_version
from tests.helpers.data import tiny_config

pytestmark = [pytest.mark.flow, pytest.mark.slow]

# An overall margin the challenger's 100 test images can clear (its paired bound is about -0.13), so
# only a slice can refuse; each class (10 test images) is judged.
GATE = (
    "evaluate.thresholds={}",
    "deploy.margin=0.2",
    "deploy.slice_margin=0.5",
    "deploy.min_slice_rows=10",
    "train.epochs=6",
)


def mislabel_trousers_as_dresses(repo: Path, keep: int = 5) -> int:
    """Move all but ``keep`` training trousers into the dress folder (their manifest label with them);
    five stay, the fewest per class data validation accepts."""
    data = repo / "data"
    with (data / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    trousers = [row for row in rows if row["split"] == "train" and row["label"] == "trouser"][keep:]
    for row in trousers:
        moved = row["path"].replace("/trouser/", "/dress/")
        (data / moved).parent.mkdir(parents=True, exist_ok=True)
        (data / row["path"]).rename(data / moved)
        row["path"], row["label"] = moved, "dress"
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split", "sha256"])
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["path"]))
    return len(trousers)


def test_a_one_class_regression_is_refused_by_the_gate_naming_the_class(flow_state: Path, tiny_repo: Path) -> None:
    from flows.full_flow import full_flow

    first = full_flow(config=tiny_config(tiny_repo, *GATE))
    assert first.deploy.promoted and first.deploy.champion_after == "1"
    assert mislabel_trousers_as_dresses(tiny_repo) >= 10
    commit_version(tiny_repo, "v2.1")

    second = full_flow(config=tiny_config(tiny_repo, *GATE, "dataset.revision=v2.1"))
    assert second.train.dataset_revision == "v2.1" and not second.deploy.promoted
    evidence = second.deploy.non_inferiority
    assert evidence is not None
    trouser = next(s for s in evidence["slices"] if s["scope"] == "class trouser")
    assert trouser["judged"] and not trouser["passed"] and trouser["challenger"] < trouser["champion"]
    assert evidence["overall"]["passed"]  # the average alone would have let it through
    assert "not shown non-inferior to version 1" in second.deploy.reason and "class trouser" in second.deploy.reason
    assert read_pointer(get_settings().central_storage_url, "fashion-cnn").version == "1"  # type: ignore[union-attr]
    refused = read_history(get_settings().central_storage_url, "fashion-cnn")[-1]
    assert (refused.event, refused.version, refused.provenance["data_revision"]) == ("refused", "2", "v2.1")
