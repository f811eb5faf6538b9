"""The shadow report and its verdict on rows the service's own log wrote, in SQLite and in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from configs.schema import ShadowConfig
from services.dl_service.store import PredictionLog
from tasks.core.shadow_pointer import ShadowPointer
from tasks.deployment.shadow import judge_shadow, shadow_report

CLASSES = ["bag", "coat", "shirt"]


def pointer(started: datetime) -> ShadowPointer:
    return ShadowPointer(
        name="m", version="2", sums_sha256="0" * 64, sample=1.0, started_at=started.isoformat(), champion="1"
    )


def one_hot(index: int) -> list[float]:
    return [0.9 if i == index else 0.05 for i in range(len(CLASSES))]


def fill(log: PredictionLog, rng: np.random.Generator) -> tuple[int, int]:
    """200 predictions; the shadow calls 20 coats shirts. 60 get labels: the champion is right on 48,
    the shadow on 45 (it is wrong on the 3 labelled coats it turned into shirts). Returns (agreed, labelled)."""
    now = datetime.now(UTC)
    champion = rng.integers(0, 3, size=200)
    coats = np.flatnonzero(champion == 1)[:20]
    shadow = champion.copy()
    shadow[coats] = 2
    rows, shadow_rows = [], []
    for i in range(200):
        common = {"created_at": now, "model_name": "m", "confidence": 0.9, "latency_ms": 1.0}
        rows.append(
            {
                **common,
                "id": f"p{i}",
                "model_version": "1",
                "predicted_label": CLASSES[champion[i]],
                "probabilities": one_hot(champion[i]),
                "uae": [0.0],
                "sha256": "0" * 64,
                "abstain": False,
            }
        )
        shadow_rows.append({**common, "prediction_id": f"p{i}", "model_version": "2", "champion_version": "1",
                            "predicted_label": CLASSES[shadow[i]], "probabilities": one_hot(shadow[i]),
                            "abstain": i % 10 == 0})  # fmt: skip
    log.write(rows)
    assert log.write_shadow(shadow_rows)
    log.write_shadow(shadow_rows[:5])  # written twice (a retried batch): kept once
    labelled = [int(c) for c in coats[:3]] + [i for i in range(200) if i not in set(coats.tolist())][:57]
    wrong_for_both = labelled[3:15]  # 12 rows neither version gets right
    for i in labelled:
        truth = champion[i] if i not in wrong_for_both else (champion[i] + 1) % 3
        log.add_feedback(f"p{i}", CLASSES[truth])
    return 200 - 20, len(labelled)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("fresh_database"))


def test_the_report_counts_agreement_disagreements_and_paired_accuracy(database_url: str, tmp_path: Path) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    log = PredictionLog(database_url, tmp_path / "spool")
    log.start()
    try:
        agreed, labelled = fill(log, np.random.default_rng(0))
    finally:
        log.close()
    report = shadow_report(database_url, str(tmp_path / "storage"), pointer(started), 0.95)
    assert report.predictions == 200 and report.labelled == labelled == 60
    assert report.agreement == pytest.approx(agreed / 200)
    assert report.agreement_lower_bound is not None and 0.85 < report.agreement_lower_bound < agreed / 200
    assert report.classes == CLASSES  # no metadata in this storage: the labels seen, sorted
    assert report.disagreement_matrix[1][2] == 20 and report.most_disagreed[0] == {
        "champion": "coat", "shadow": "shirt", "count": 20
    }  # fmt: skip
    assert report.agreement_by_class["coat"] < 1.0 == report.agreement_by_class["bag"]
    assert report.abstain_rate == {"champion": 0.0, "shadow": pytest.approx(0.1)}
    assert report.accuracy is not None
    assert (report.accuracy.champion, report.accuracy.challenger) == (pytest.approx(48 / 60), pytest.approx(45 / 60))

    # Rows from before the shadow started belong to an earlier one.
    assert shadow_report(database_url, "", pointer(datetime.now(UTC) + timedelta(hours=1)), 0.95).predictions == 0

    def verdict(**rule: object) -> tuple[str, str]:
        judged = judge_shadow(report, ShadowConfig(enabled=True, **rule))  # type: ignore[arg-type]
        return judged.status, "; ".join(judged.reasons)

    assert verdict(min_predictions=201)[0] == "waiting"
    assert verdict(min_predictions=100, min_agreement=0.8)[0] == "ready"
    status, reasons = verdict(min_predictions=100, min_agreement=0.9)
    assert status == "failed" and "agreement 0.9000 on 200 predictions" in reasons
    assert verdict(min_predictions=100, min_agreement=None, accuracy_margin=0.01, min_labelled=61)[0] == "waiting"
    assert verdict(min_predictions=100, accuracy_margin=0.01, min_labelled=61)[0] == "failed"  # agreement decides
    status, reasons = verdict(min_predictions=100, min_agreement=None, accuracy_margin=0.01, min_labelled=50)
    assert status == "failed" and "accuracy 0.7500 vs 0.8000" in reasons
    assert verdict(min_predictions=100, min_agreement=None, accuracy_margin=0.2, min_labelled=50)[0] == "ready"
