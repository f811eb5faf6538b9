"""How often does each promotion rule let a challenger in, when the true difference is known?

    python benchmarks/promotion_gate.py [--trials 100]

Simulated champion/challenger pairs on a test split of 10,000 images in 10 classes (the size of
Fashion-MNIST's), champion accuracy 0.92 on every class. Two retrainings get mostly the same images
wrong: each image's "difficulty" is shared by both models with probability 0.8, so about 4% of the
images are answered differently, as between two versions trained here. For each scenario, the share
of trials in which each rule promotes:

- **point margin**: the challenger's accuracy may trail the champion's by at most the margin (0.005),
  compared as point estimates: this project's previous rule, and what TFMA's change threshold does;
- **MLflow MetricThreshold**: `min_absolute_change`, the candidate must beat the baseline's point
  estimate (here by 1e-6: "not worse"); MLflow has no margin for trailing, no interval, no slices;
- **paired non-inferiority** (the shipped rule, tasks/deployment/noninferiority.py): the one-sided
  95% lower bound of the paired difference above -0.005 overall, and above -0.03 on every class
  (Bonferroni-corrected).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS, CLASSES, CHAMPION_ACCURACY, SHARED = 10_000, 10, 0.92, 0.8
MARGIN, SLICE_MARGIN = 0.005, 0.03
SCENARIOS = {  # the challenger's accuracy per class, and whether a careful reviewer would promote it
    "equal": (np.full(CLASSES, 0.92), True),
    "0.5 point better": (np.full(CLASSES, 0.925), True),
    "1 point worse everywhere": (np.full(CLASSES, 0.91), False),
    "one class 5 points worse (0.5 overall)": (np.r_[0.87, np.full(CLASSES - 1, 0.92)], False),
    "one class 10 points worse, others 1 better": (np.r_[0.82, np.full(CLASSES - 1, 0.93)], False),
}


def probabilities(answer: np.ndarray) -> np.ndarray:
    out = np.full((len(answer), CLASSES), 0.1 / (CLASSES - 1))
    out[np.arange(len(answer)), answer] = 0.9
    return out


def pair(rng: np.random.Generator, challenger_accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and the two models' probabilities; errors shared through a common per-image difficulty."""
    labels = rng.integers(0, CLASSES, ROWS)
    difficulty = rng.random(ROWS)
    own = np.where(rng.random(ROWS) < SHARED, difficulty, rng.random(ROWS))
    wrong = (labels + rng.integers(1, CLASSES, ROWS)) % CLASSES
    champion = np.where(difficulty < CHAMPION_ACCURACY, labels, wrong)
    challenger = np.where(own < challenger_accuracy[labels], labels, wrong)
    return labels, probabilities(challenger), probabilities(champion)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    from tasks.deployment.noninferiority import non_inferiority

    names = [f"class_{i}" for i in range(CLASSES)]
    rng = np.random.default_rng(0)
    rows = []
    for scenario, (accuracy, wanted) in SCENARIOS.items():
        counts = {"point margin": 0, "MLflow MetricThreshold": 0, "paired non-inferiority": 0}
        for _ in range(args.trials):
            labels, challenger, champion = pair(rng, accuracy)
            ours = (challenger.argmax(axis=1) == labels).mean()
            theirs = (champion.argmax(axis=1) == labels).mean()
            counts["point margin"] += ours - theirs >= -MARGIN
            counts["MLflow MetricThreshold"] += ours >= theirs + 1e-6
            gate = non_inferiority(
                labels, challenger, champion, names, "accuracy", MARGIN, SLICE_MARGIN, 0.95, resamples=500,
                seed=int(rng.integers(1 << 30)),
            )  # fmt: skip
            counts["paired non-inferiority"] += gate.passed
        rows.append(
            {"scenario": scenario, "should promote": "yes" if wanted else "no"}
            | {rule: round(count / args.trials, 2) for rule, count in counts.items()}
        )
    print(f"Share of {args.trials} trials promoted ({ROWS:,} test images, champion accuracy {CHAMPION_ACCURACY}):\n")
    print(pd.DataFrame(rows).set_index("scenario").to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
