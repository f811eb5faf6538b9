"""Shadow mode seen from the deployment stage: start and stop a shadow, report what it said, judge it.

The services log each shadow prediction beside the production one (``shadow_predictions``, joined
on the prediction id). The report compares the two on the same images: how often they agree (with
a one-sided Wilson bound), where they disagree (the champion's label against the shadow's), and,
on the predictions that received a feedback label, both accuracies with the paired bootstrap the
offline gate uses. ``judge_shadow`` turns the report and ``deploy.shadow`` into ready, waiting or
failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from scipy.stats import norm
from sqlalchemy import create_engine, inspect, text

from configs.schema import ShadowConfig
from tasks.core.audit import AuditEntry, append_entry
from tasks.core.errors import MlopsError
from tasks.core.pointer import read_pointer
from tasks.core.shadow_pointer import ShadowPointer, clear_shadow, read_shadow, write_shadow
from tasks.core.storage import read_metadata
from tasks.deployment.noninferiority import PairedComparison, compare
from tasks.evaluation.model_card import wilson

Status = Literal["ready", "waiting", "failed"]
RESAMPLES = 2000

# The production row and what the shadow said of the same image, with the newest feedback label.
SHADOW_ROWS = """
SELECT p.predicted_label AS champion_label, p.probabilities AS champion_probabilities,
       p.abstain AS champion_abstain, p.ood AS champion_ood,
       s.predicted_label AS shadow_label, s.probabilities AS shadow_probabilities,
       s.abstain AS shadow_abstain, s.ood AS shadow_ood,
       (SELECT f.label FROM feedback f WHERE f.prediction_id = p.id ORDER BY f.id DESC LIMIT 1) AS label
FROM shadow_predictions s JOIN predictions p ON p.id = s.prediction_id
WHERE s.model_name = :name AND s.model_version = :version AND s.champion_version = :champion
  AND p.model_version = :champion AND s.created_at >= :since
"""


@dataclass(frozen=True)
class ShadowReport:
    model: str
    shadow_version: str
    champion_version: str
    started_at: str
    sample: float
    predictions: int
    agreement: float | None
    agreement_lower_bound: float | None  # one-sided, at ``confidence``
    confidence: float
    classes: list[str]
    disagreement_matrix: list[list[int]]  # [champion's label][shadow's label], in ``classes`` order
    most_disagreed: list[dict[str, Any]]  # the largest off-diagonal cells
    agreement_by_class: dict[str, float]  # by the champion's label
    abstain_rate: dict[str, float | None]  # champion, shadow
    ood_rate: dict[str, float | None]
    labelled: int
    accuracy: PairedComparison | None  # shadow against champion on the labelled rows
    status: Status = "waiting"
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["accuracy"] = self.accuracy.as_dict() if self.accuracy else None
        return body


def start_shadow(
    storage_url: str, name: str, version: str, sample: float, reason: str, who: str, evidence: dict[str, Any] | None
) -> tuple[ShadowPointer, AuditEntry]:
    """Put ``version`` in shadow beside the production version. A shadow already running is stopped first:
    another version, or this one beside an earlier champion (agreement with it says nothing now)."""
    production = read_pointer(storage_url, name)
    champion = production.version if production else None
    if champion is None:
        raise MlopsError(f"{name} has no production version to shadow; deploy one first")
    if version == champion:
        raise MlopsError(f"version {version} is the production version; shadow another one")
    previous = read_shadow(storage_url, name)
    if previous is not None:
        stop_shadow(storage_url, name, f"replaced by version {version} beside version {champion}", who, None)
    pointer = write_shadow(storage_url, name, version, sample, champion, reason)
    entry = append_entry(storage_url, name, "shadow_start", version, reason, champion, evidence, who)
    return pointer, entry


def stop_shadow(
    storage_url: str,
    name: str,
    reason: str,
    who: str,
    evidence: dict[str, Any] | None,
    only_version: str | None = None,
) -> AuditEntry | None:
    """End the shadow (services drop it at their next pointer check), or only a shadow of ``only_version``;
    None when there was none to end."""
    pointer = read_shadow(storage_url, name)
    if pointer is None or only_version not in (None, pointer.version):
        return None
    clear_shadow(storage_url, name)
    return append_entry(storage_url, name, "shadow_stop", pointer.version, reason, pointer.champion, evidence, who)


def shadow_report(
    database_url: str, storage_url: str, pointer: ShadowPointer, confidence: float, seed: int = 0
) -> ShadowReport:
    """Everything the shadow said since it started, against the production version on the same images."""
    rows = _read_rows(database_url, pointer)
    classes = list(read_metadata(storage_url, pointer.name, pointer.version).get("class_names") or [])
    classes += sorted({r["champion_label"] for r in rows} | {r["shadow_label"] for r in rows} - set(classes))
    index = {name: position for position, name in enumerate(classes)}
    count = len(rows)
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    for row in rows:
        matrix[index[row["champion_label"]], index[row["shadow_label"]]] += 1
    agreed = int(np.trace(matrix))
    lower = wilson(agreed, count, float(norm.ppf(confidence)))[0] if count else None
    off_diagonal = [(int(matrix[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j]
    most = [
        {"champion": classes[i], "shadow": classes[j], "count": n} for n, i, j in sorted(off_diagonal, reverse=True)
    ]
    by_class = {classes[i]: float(matrix[i, i] / matrix[i].sum()) for i in range(len(classes)) if matrix[i].sum() > 0}
    return ShadowReport(
        model=pointer.name,
        shadow_version=pointer.version,
        champion_version=str(pointer.champion),
        started_at=pointer.started_at,
        sample=pointer.sample,
        predictions=count,
        agreement=agreed / count if count else None,
        agreement_lower_bound=lower,
        confidence=confidence,
        classes=classes,
        disagreement_matrix=matrix.tolist(),
        most_disagreed=[cell for cell in most if cell["count"] > 0][:5],
        agreement_by_class=by_class,
        abstain_rate={side: _rate(rows, f"{side}_abstain") for side in ("champion", "shadow")},
        ood_rate={side: _rate(rows, f"{side}_ood") for side in ("champion", "shadow")},
        labelled=sum(1 for row in rows if row["label"] in index),
        accuracy=_paired_accuracy(rows, classes, index, confidence, seed),
    )


def judge_shadow(report: ShadowReport, rule: ShadowConfig) -> ShadowReport:
    """The report with its verdict: waiting for evidence, ready to promote, or failed (with the reasons)."""
    waiting: list[str] = []
    failed: list[str] = []
    passed: list[str] = []
    if report.predictions < rule.min_predictions:
        waiting.append(f"{report.predictions} of {rule.min_predictions} shadow predictions so far")
    elif rule.min_agreement is not None:
        bound = report.agreement_lower_bound or 0.0
        said = (
            f"agreement {report.agreement:.4f} on {report.predictions} predictions, "
            f"{report.confidence:.0%} lower bound {bound:.4f} (wanted {rule.min_agreement})"
        )
        (passed if bound >= rule.min_agreement else failed).append(said)
    if rule.accuracy_margin is not None:
        accuracy = report.accuracy
        if report.labelled < rule.min_labelled or accuracy is None:
            waiting.append(f"{report.labelled} of {rule.min_labelled} labelled shadow predictions so far")
        else:
            accuracy = _with_margin(accuracy, rule.accuracy_margin)
            report = replace(report, accuracy=accuracy)  # the evidence carries the margin it was judged by
            (passed if accuracy.passed else failed).append(f"on feedback labels, {accuracy.describe()}")
    status: Status = "failed" if failed else "waiting" if waiting else "ready"
    reasons = failed or waiting or passed or [f"{report.predictions} shadow predictions, no criterion set"]
    return replace(report, status=status, reasons=reasons)


def describe_report(report: ShadowReport) -> str:
    """Markdown for the Prefect artifact and the terminal."""
    agreement = "-" if report.agreement is None else f"{report.agreement:.4f}"
    bound = "-" if report.agreement_lower_bound is None else f"{report.agreement_lower_bound:.4f}"
    lines = [
        f"# Shadow: {report.model} version {report.shadow_version} beside version {report.champion_version}",
        "",
        f"**{report.status}**: {'; '.join(report.reasons)}",
        "",
        f"Since {report.started_at}, sampling {report.sample:.0%} of micro-batches.",
        "",
        "| | value |",
        "|---|---|",
        f"| shadow predictions | {report.predictions} |",
        f"| agreement with the champion | {agreement} (lower bound {bound}) |",
        f"| abstained: champion / shadow | {_share(report.abstain_rate['champion'])} / "
        f"{_share(report.abstain_rate['shadow'])} |",
        f"| out of distribution: champion / shadow | {_share(report.ood_rate['champion'])} / "
        f"{_share(report.ood_rate['shadow'])} |",
        f"| labelled | {report.labelled} |",
    ]
    if report.accuracy is not None:
        accuracy = report.accuracy
        lines.append(
            f"| accuracy on labels: shadow / champion | {accuracy.challenger:.4f} / {accuracy.champion:.4f} "
            f"(difference {accuracy.difference:+.4f}) |"
        )
    if report.most_disagreed:
        lines += ["", "Most frequent disagreements (champion said, shadow said):", ""]
        lines += [f"- {cell['champion']} -> {cell['shadow']}: {cell['count']}" for cell in report.most_disagreed]
    return "\n".join(lines)


def _read_rows(database_url: str, pointer: ShadowPointer) -> list[dict[str, Any]]:
    """The joined rows, by plain SQL (the service's tables; no import of the service)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("shadow_predictions"):
                return []
            parameters = {
                "name": pointer.name,
                "version": pointer.version,
                "champion": pointer.champion,
                "since": _since(pointer.started_at, engine.dialect.name),
            }
            found = connection.execute(text(SHADOW_ROWS), parameters).mappings().all()
    finally:
        engine.dispose()
    return [dict(row) for row in found]


def _since(started_at: str, dialect: str) -> Any:
    """SQLite keeps timestamps as text in the service's format; PostgreSQL compares real ones."""
    stamp = datetime.fromisoformat(started_at).astimezone(UTC)
    return stamp.replace(tzinfo=None).isoformat(sep=" ") if dialect == "sqlite" else stamp


def _paired_accuracy(
    rows: list[dict[str, Any]], classes: list[str], index: dict[str, int], confidence: float, seed: int
) -> PairedComparison | None:
    labelled = [row for row in rows if row["label"] in index]
    if not labelled:
        return None
    labels = np.array([index[row["label"]] for row in labelled])
    shadow, champion = (
        np.array([_probabilities(row[f"{side}_probabilities"], len(classes)) for row in labelled])
        for side in ("shadow", "champion")
    )
    rng = np.random.default_rng(seed)
    return compare("labelled shadow traffic", "accuracy", labels, shadow, champion, classes, confidence, 0.0,
                   RESAMPLES, rng)  # fmt: skip


def _probabilities(value: Any, width: int) -> list[float]:
    values = json.loads(value) if isinstance(value, str) else list(value)
    return values if len(values) == width else [*values, *[0.0] * (width - len(values))]


def _with_margin(comparison: PairedComparison, margin: float) -> PairedComparison:
    return PairedComparison(**{**asdict(comparison), "margin": margin})


def _rate(rows: list[dict[str, Any]], column: str) -> float | None:
    known = [bool(row[column]) for row in rows if row[column] is not None]
    return sum(known) / len(known) if known else None


def _share(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"
