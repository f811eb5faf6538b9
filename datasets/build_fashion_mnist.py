"""Build the Fashion-MNIST demo dataset repository (git + DVC, tags v1.0 and v2.0).

    python datasets/build_fashion_mnist.py            # into datasets/fashion-mnist
    python datasets/build_fashion_mnist.py --source DIR   # idx .gz files already on disk
    python datasets/build_fashion_mnist.py --size small --dvc-remote s3://bucket/dvc/fashion-mnist

Re-running is quick when both tags exist.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.data.demo import SMALL_SIZES, SplitSizes, build_dataset_repository  # noqa: E402
from tasks.core.errors import MlopsError  # noqa: E402
from tasks.core.settings import get_settings  # noqa: E402


SIZES = {"full": SplitSizes(), "small": SMALL_SIZES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent / "fashion-mnist")
    parser.add_argument("--source", type=Path, help="folder holding the four idx .gz files")
    parser.add_argument(
        "--dvc-remote", help="the DVC remote: a folder or a URL such as s3://bucket/prefix (default: the state folder's)"
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="small: a few hundred images, for demos")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    remote = args.dvc_remote or str(get_settings().dvc_remote_dir / args.repo.name)
    try:
        written = build_dataset_repository(args.repo, remote, args.source, SIZES[args.size])
    except MlopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.repo}: {'built ' + ', '.join(written) if written else 'already complete'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
