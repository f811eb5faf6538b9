"""Build the Fashion-MNIST demo dataset repository from Debian's ``dataset-fashion-mnist`` package.

The images become PNG files in a ``data/<split>/<class>/`` layout with ``data/manifest.csv``
(path, label, split, sha256), tracked by DVC in a git repository of their own. Two tagged
versions make the DVC pin mean something: ``v1.0`` (a training subset) and ``v2.0`` (all
70,000 images); v1.0's files are a subset of v2.0's, so the versions share the DVC cache.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tasks.core.errors import DatasetBuildError
from tasks.core.image_properties import content_hash
from tasks.data.repository import DATA_DIR, MANIFEST, list_tags, run_dvc, run_git

logger = logging.getLogger(__name__)

DEBIAN_PACKAGE = "dataset-fashion-mnist"
PACKAGE_DATA_DIR = Path("usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)


@dataclass(frozen=True)
class SplitSizes:
    """How many images each tagged version holds; validation and test are shared by both."""

    train_v1: int = 20_000
    train_v2: int = 55_000
    validation: int = 5_000
    test: int = 10_000


# The small demo repository (a few hundred images): the stack's demo, the notebook and the tests.
SMALL_SIZES = SplitSizes(train_v1=100, train_v2=200, validation=60, test=100)
# Overrides that make a real flow run take seconds on it; three epochs are enough for the model to
# learn (0.56-0.66 test accuracy, against 0.10-0.20 untrained).
SMALL_TRAINING = [
    "train.epochs=3",
    "train.batch_size=32",
    "train.drift.reference_rows=40",
    "train.drift.uae_dim=8",
    "train.trust.shift_windows=60",
    "dataset.validation.max_property_drift=0.5",
    "dataset.validation.max_label_drift=0.5",
]


@dataclass(frozen=True)
class Example:
    split: str
    source: str  # "train" or "test" file of the original release
    index: int
    label: int

    @property
    def relative_path(self) -> str:
        return f"{self.split}/{CLASS_NAMES[self.label]}/{self.source}-{self.index:05d}.png"


def fetch_debian_package(workdir: Path) -> Path:
    """``apt-get download`` + ``dpkg -x`` (no root needed); returns the folder of idx files."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DatasetBuildError(
            "apt-get and dpkg are needed to fetch the Debian package "
            f"{DEBIAN_PACKAGE}; on another system pass --source with the four Fashion-MNIST idx .gz files"
        )
    try:
        subprocess.run(["apt-get", "download", DEBIAN_PACKAGE], cwd=workdir, check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        raise DatasetBuildError(
            f"apt-get download {DEBIAN_PACKAGE} failed: {error.stderr.decode().strip()}\n"
            "Run `apt-get update` once (as root) and retry, or pass --source"
        ) from None
    deb = next(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True)
    return workdir / "root" / PACKAGE_DATA_DIR


def read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (gzip-compressed) into an array, checking its declared shape."""
    data = gzip.decompress(path.read_bytes())
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DatasetBuildError(f"{path} is not an unsigned-byte idx file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DatasetBuildError(f"{path} is truncated: expected shape {shape}")
    return array.reshape(shape)


def load_source(source_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The original train and test releases as (images, labels)."""
    releases = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(source_dir / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(source_dir / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise DatasetBuildError(f"{source_dir}: {name} has {len(images)} images but {len(labels)} labels")
        releases[name] = (images, labels)
    return releases


def plan_versions(labels: dict[str, np.ndarray], sizes: SplitSizes, seed: int = 0) -> dict[str, list[Example]]:
    """Assign original images to splits for each version; v1.0 is a subset of v2.0."""
    n_train = sizes.validation + sizes.train_v2
    if n_train > len(labels["train"]) or sizes.test > len(labels["test"]) or sizes.train_v1 > sizes.train_v2:
        raise DatasetBuildError(f"split sizes {sizes} do not fit the source release")
    order = np.random.default_rng(seed).permutation(len(labels["train"]))

    def examples(split: str, source: str, indices: np.ndarray) -> list[Example]:
        return [Example(split, source, int(i), int(labels[source][i])) for i in sorted(indices)]

    shared = examples("validation", "train", order[: sizes.validation]) + examples(
        "test", "test", np.arange(sizes.test)
    )
    train_pool = order[sizes.validation : n_train]
    return {
        "v1.0": examples("train", "train", train_pool[: sizes.train_v1]) + shared,
        "v2.0": examples("train", "train", train_pool) + shared,
    }


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def write_version(data_dir: Path, examples: list[Example], releases: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the version's PNG files (skipping ones already there) and its manifest."""
    wanted = {example.relative_path for example in examples}
    _remove_unlisted(data_dir, wanted)
    rows = []
    for example in tqdm(examples, desc="Writing PNG files", unit="img", leave=False):
        path = data_dir / example.relative_path
        content = png_bytes(releases[example.source][0][example.index])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        rows.append((example.relative_path, CLASS_NAMES[example.label], example.split, content_hash(content)))
    with (data_dir / MANIFEST).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "sha256"])
        writer.writerows(sorted(rows))


def _remove_unlisted(data_dir: Path, wanted: set[str]) -> None:
    for path in data_dir.glob("*/*/*.png"):
        if path.relative_to(data_dir).as_posix() not in wanted:
            path.unlink()


def init_repository(repo: Path, remote: Path | str) -> None:
    """git + DVC, with the DVC remote committed before any data, so `dvc push -T` covers every tag.

    ``remote`` is a folder or a URL DVC knows (s3://bucket/prefix with dvc-s3 installed).
    """
    repo.mkdir(parents=True, exist_ok=True)
    if not (repo / ".git").is_dir():
        run_git(repo, "init", "--quiet", "--initial-branch", "main")
    if not (repo / ".dvc").is_dir():
        run_dvc(repo, "init", "--quiet")
        run_dvc(repo, "config", "core.analytics", "false")
        run_dvc(repo, "config", "core.autostage", "true")
        if isinstance(remote, Path) or "://" not in remote:
            Path(remote).mkdir(parents=True, exist_ok=True)
        run_dvc(repo, "remote", "add", "--default", "storage", str(remote))
        (repo / ".gitignore").write_text("/data\n", encoding="utf-8")
        run_git(repo, "add", ".dvc", ".dvcignore", ".gitignore")
        run_git(repo, "commit", "--quiet", "-m", "Configure DVC and its remote")


def commit_version(repo: Path, tag: str) -> None:
    logger.info("Hashing and committing %s (dvc add)", tag)
    run_dvc(repo, "add", "--quiet", DATA_DIR)
    run_git(repo, "add", f"{DATA_DIR}.dvc")
    run_git(repo, "commit", "--quiet", "--allow-empty", "-m", f"Dataset {tag}")
    run_git(repo, "tag", "-a", tag, "-m", f"Fashion-MNIST {tag}")
    logger.info("Pushing %s to the DVC remote", tag)
    run_dvc(repo, "push", "--quiet")


def build_dataset_repository(
    repo: Path, remote_dir: Path | str, source_dir: Path | None = None, sizes: SplitSizes | None = None
) -> list[str]:
    """Build (or finish building) the repository; returns the tags written by this call.

    Re-running when both tags exist does nothing, so ``make run`` can call it every time.
    """
    repo.mkdir(parents=True, exist_ok=True)
    pending = [tag for tag in ("v1.0", "v2.0") if not (repo / ".git").is_dir() or tag not in list_tags(repo)]
    if not pending:
        logger.info("Dataset repository %s is complete (tags v1.0, v2.0)", repo)
        return []
    with tempfile.TemporaryDirectory(prefix="fashion-mnist-") as workdir:
        releases = load_source(source_dir or fetch_debian_package(Path(workdir)))
        plans = plan_versions({name: labels for name, (_, labels) in releases.items()}, sizes or SplitSizes())
        init_repository(repo, remote_dir)
        for tag in pending:
            logger.info("Writing dataset version %s (%d images)", tag, len(plans[tag]))
            write_version(repo / DATA_DIR, plans[tag], releases)
            commit_version(repo, tag)
    return pending
