"""Champion next to challenger: the summary table names what got worse, whichever way a metric points."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tasks.deployment.comparison import comparison_markdown, plot_champion_vs_challenger

HEADLINE = {"macro_auc": 0.99}
CHAMPION = {"accuracy": 0.90, "macro_f1": 0.89, **HEADLINE, "ece": 0.02, "recall/coat": 0.85, "recall/bag": 0.97}
# Better on average and calibration, but coats are missed far more often.
CHALLENGER = {"accuracy": 0.91, "macro_f1": 0.90, **HEADLINE, "ece": 0.01, "recall/coat": 0.70, "recall/bag": 0.99}


def test_the_table_puts_the_class_that_got_worse_first_and_reads_ece_as_lower_is_better() -> None:
    rows = comparison_markdown(CHALLENGER, CHAMPION, worst=1)
    assert rows[2:] == [
        "| accuracy | 0.9100 | 0.9000 | +0.0100 |",
        "| macro_f1 | 0.9000 | 0.8900 | +0.0100 |",
        "| macro_auc | 0.9900 | 0.9900 | +0.0000 |",
        "| ece | 0.0100 | 0.0200 | -0.0100 |",  # lower: better, so not marked
        "| recall/coat | 0.7000 | 0.8500 | -0.1500 (worse) |",
    ]


def test_the_figure_has_a_pair_of_bars_per_metric(tmp_path: Path) -> None:
    path = plot_champion_vs_challenger(CHALLENGER, CHAMPION, ("2", "1"), tmp_path / "comparison.png")
    with Image.open(path) as image:
        width, height = image.size
    assert width == 800 and height > 300  # six metrics at 0.45 in each, 100 dpi
