"""The model card of a version, written into its bundle before publishing (``model_card.md`` and
``model_card.html``, checksummed and signed with the rest): what it is for and not for, which data
made it, how it performs on the test split with intervals, per class and per slice, how far its
probabilities and sets can be trusted, and the quality gate's verdict on these figures.

Intervals of proportions are Wilson score intervals (95%): right at the edges (a recall of 1.0 on
40 images is not "1.0 +- 0"), with no resampling. The champion comparison comes later, at deploy,
and is recorded in the audit trail (`mlops history`), since a published version never changes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.schema import FlowConfig
from tasks.evaluation.gate import gate_violations
from tasks.evaluation.metrics import Predictions, classification_metrics
from tasks.evaluation.slices import PROPERTY_SLICES, TERCILES, property_thirds

CARD_MARKDOWN, CARD_HTML = "model_card.md", "model_card.html"
Z_95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% two-sided by default; ``z`` sets the width)."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    centre = (p + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / (1 + z**2 / trials)
    return float(centre - half), float(centre + half)


def with_interval(successes: int, trials: int) -> str:
    low, high = wilson(successes, trials)
    return f"{successes / trials:.4f} ({low:.4f} to {high:.4f})" if trials else "-"


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def card_sections(
    config: FlowConfig,
    metadata: dict[str, Any],
    predictions: Predictions,
    properties: pd.DataFrame,
    table: pd.DataFrame,
    metrics: dict[str, float],
) -> list[Section]:
    """Every section of the card. ``predictions`` are the test split's, aligned with ``properties``
    (brightness and contrast of the same images); ``table`` is the property table of every split used."""
    names, labels = predictions.class_names, predictions.labels
    correct = predictions.predicted == labels
    measured = classification_metrics(predictions)
    dataset, code = metadata.get("dataset", {}), metadata.get("code", {})
    sections = [
        Section(
            "Model",
            [
                f"`{config.model.name}` version {metadata.get('version', '?')}, {config.model.architecture}, input "
                f"{config.model.input_size[0]}x{config.model.input_size[1]}, {len(names)} classes: "
                + ", ".join(names)
                + f". Created {metadata.get('created_at', '?')}."
            ],
        ),
        Section("Intended use", [config.model.intended_use]),
        Section(
            "Limits",
            [f"- {limit}" for limit in config.model.limitations]
            + [
                "- Answers outside the training distribution are flagged (`ood`) and abstained on, at a false-positive "
                f"rate of {config.train.trust.ood_false_positive_rate:.0%} on in-distribution images; the flag is a "
                "screen, not a guarantee.",
            ],
        ),
    ]
    counts = table.groupby(["label", "split"]).size().unstack(fill_value=0)
    splits = [s for s in ("train", "validation", "test") if s in counts.columns]
    sections.append(
        Section(
            "Data",
            [
                f"`{dataset.get('path', '?')}` revision `{dataset.get('revision', '?')}` (commit "
                f"`{str(dataset.get('commit', '?'))[:12]}`, content `{dataset.get('content_hash', '?')}`). Images per "
                "class and split:"
            ],
            ["class", *splits],
            [
                [name, *(str(int(counts.loc[name, s])) if name in counts.index else "0" for s in splits)]
                for name in names
            ],
        )
    )
    total = int(correct.sum())
    sections.append(
        Section(
            "Performance",
            [
                f"On the `{config.evaluate.split}` split ({len(labels):,} images), 95% intervals in brackets: "
                f"accuracy {with_interval(total, len(labels))}, macro F1 {measured['macro_f1']:.4f}, macro AUC "
                f"{measured['macro_auc']:.4f}, log loss {measured['log_loss']:.4f}."
            ],
            ["class", "images", "recall", "precision"],
            [
                [
                    name,
                    str(int((labels == index).sum())),
                    with_interval(int(correct[labels == index].sum()), int((labels == index).sum())),
                    with_interval(
                        int(correct[predictions.predicted == index].sum()), int((predictions.predicted == index).sum())
                    ),
                ]
                for index, name in enumerate(names)
            ],
        )
    )
    slice_rows = []
    for column in PROPERTY_SLICES:
        values = properties[column].to_numpy(float)
        which = property_thirds(values)
        for tercile, name in enumerate(TERCILES):
            mask = which == tercile
            span = f"{values[mask].min():.3f} to {values[mask].max():.3f}" if mask.any() else "-"
            count = int(mask.sum())
            slice_rows.append(
                [f"{column}, {name} third", span, str(count), with_interval(int(correct[mask].sum()), count)]
            )
    sections.append(
        Section(
            "Slices",
            ["Accuracy by image property (the same slices the promotion gate judges):"],
            ["slice", "range", "images", "accuracy"],
            slice_rows,
        )
    )
    trust = [
        f"Expected calibration error {measured['ece']:.4f}"
        + (f" (network softmax {measured['ece_uncalibrated']:.4f})" if "ece_uncalibrated" in measured else "")
        + (f", temperature {metrics['calibration/temperature']:.3f}" if "calibration/temperature" in metrics else "")
        + "."
    ]
    if "set_coverage" in measured:
        per_class = [(measured[f"set_coverage/{n}"], n) for n in names]
        worst = min((value, name) for value, name in per_class if value == value)  # NaN: a class absent here
        trust.append(
            f"Prediction sets at alpha {config.train.trust.alpha}: coverage {measured['set_coverage']:.4f} "
            f"(worst class {worst[1]}, {worst[0]:.4f}), {measured['mean_set_size']:.2f} classes on average; "
            f"{measured['ood_rate']:.1%} of these images flagged out of distribution."
        )
    if "estimator/windows" in metrics:
        trust.append(
            "The monitor estimates accuracy before labels with a regression fitted on "
            f"{int(metrics['estimator/windows'])} synthetic shifted windows "
            f"(95% error {metrics['estimator/residual_95'] * 100:.1f} points)."
        )
    sections.append(Section("Calibration and trust", trust))
    thresholds = config.evaluate.thresholds
    violations = gate_violations(measured, thresholds)
    sections.append(
        Section(
            "Quality gate",
            [
                ("Passes" if not violations else "Fails")
                + " the configured gate (`evaluate.thresholds`) on these figures"
                + ("." if not violations else ": " + "; ".join(violations) + "."),
                "Against the champion, the deploy flow's paired non-inferiority test decides; its intervals are in the "
                "audit trail (`mlops history`) and the deploy run.",
            ],
            ["metric", "value", "bound"],
            [
                [
                    metric,
                    f"{measured.get(metric, float('nan')):.4f}",
                    f"{'at least' if side == 'lower' else 'at most'} {bound}",
                ]
                for metric, (bound, side) in thresholds.items()
            ],
        )
    )
    dirty = " (uncommitted changes)" if code.get("dirty") else ""
    run_id = metadata.get("mlflow", {}).get("run_id", "?")
    sections.append(
        Section(
            "Provenance",
            [
                f"Code commit `{str(code.get('commit', '?'))[:12]}`{dirty}, config hash "
                f"`{metadata.get('config_hash', '?')}`, MLflow run `{run_id}`."
            ],
        )
    )
    return sections


def render_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.header:
            lines += ["| " + " | ".join(section.header) + " |", "|" + "---|" * len(section.header)]
            lines += ["| " + " | ".join(row) + " |" for row in section.rows]
            lines.append("")
    return "\n".join(lines)


def render_html(title: str, sections: list[Section]) -> str:
    """A self-contained page: no script, no external style (it is opened from storage on isolated networks)."""

    def inline(text: str) -> str:
        parts = html.escape(text).split("`")
        return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))

    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        items = [p[2:] for p in section.paragraphs if p.startswith("- ")]
        body += [f"<p>{inline(p)}</p>" for p in section.paragraphs if not p.startswith("- ")]
        if items:
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
        if section.header:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.header)
            rows = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in section.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = (
        "body{font-family:sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
