"""Champion next to challenger, as a reviewer wants to see them before trusting a promotion: the headline
metrics and every class's recall, side by side on the same split, with the differences."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers
import matplotlib.pyplot as plt

from tasks.evaluation.metrics import HEADLINE_METRICS

LOWER_IS_BETTER = {"ece"}


def compared_metrics(challenger: dict[str, float], champion: dict[str, float]) -> list[str]:
    """The headline metrics, then each class's recall, where both versions have a value."""
    recalls = sorted(name for name in challenger if name.startswith("recall/"))
    return [name for name in (*HEADLINE_METRICS, *recalls) if name in challenger and name in champion]


def improvement(name: str, challenger: float, champion: float) -> float:
    """Positive when the challenger is better, whichever way the metric points."""
    return champion - challenger if name in LOWER_IS_BETTER else challenger - champion


def plot_champion_vs_challenger(
    challenger: dict[str, float], champion: dict[str, float], versions: tuple[str, str], path: Path
) -> Path:
    """Paired horizontal bars per metric; the difference printed beside each pair, red where it got worse."""
    names = compared_metrics(challenger, champion)
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.4))
    rows = range(len(names))
    axis.barh([r + 0.2 for r in rows], [champion[n] for n in names], height=0.4, label=f"champion v{versions[1]}")
    axis.barh([r - 0.2 for r in rows], [challenger[n] for n in names], height=0.4, label=f"challenger v{versions[0]}")
    for row, name in zip(rows, names, strict=True):
        change = improvement(name, challenger[name], champion[name])
        color = "tab:red" if change < 0 else "tab:green"
        axis.text(1.02, row, f"{challenger[name] - champion[name]:+.3f}", va="center", color=color, fontsize=8)
    axis.set_yticks(list(rows), names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("value on the same split (ece: lower is better)")
    axis.legend(loc="lower right", fontsize=8)
    axis.set_title(f"Challenger v{versions[0]} against champion v{versions[1]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def comparison_markdown(challenger: dict[str, float], champion: dict[str, float], worst: int = 3) -> list[str]:
    """The summary's table: headline metrics, then the classes that moved most against the challenger."""
    names = compared_metrics(challenger, champion)
    headline = [n for n in names if n in HEADLINE_METRICS]
    classes = [n for n in names if n not in HEADLINE_METRICS]
    classes.sort(key=lambda n: improvement(n, challenger[n], champion[n]))
    lines = ["| metric | challenger | champion | difference |", "|---|---|---|---|"]
    for name in [*headline, *classes[:worst]]:
        new, old = challenger[name], champion[name]
        marker = " (worse)" if improvement(name, new, old) < 0 else ""
        lines.append(f"| {name} | {new:.4f} | {old:.4f} | {new - old:+.4f}{marker} |")
    return lines
