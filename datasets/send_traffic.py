"""Send demo traffic to a running service, to watch monitoring react:

    python datasets/send_traffic.py --kind fashion --count 1000 --feedback 0.3   # no drift, some labels
    python datasets/send_traffic.py --kind digits --count 500                     # drift
    kinds: fashion, digits, brightness (+40 levels), classmix (3 classes), mix25 (25% digits)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.data.dataset import read_manifest  # noqa: E402
from benchmarks.traffic import KINDS, demo_images  # noqa: E402


async def send(url: str, images: list[tuple[bytes, str | None]], feedback: float, concurrency: int) -> tuple[int, int]:
    queue = iter(enumerate(images))
    sent = labelled = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, labelled
        for index, (content, label) in queue:
            response = await client.post(f"{url}/predict", files={"file": ("image.png", content, "image/png")})
            response.raise_for_status()
            sent += 1
            if label is not None and (index % 100) < feedback * 100:
                await client.post(f"{url}/feedback/{response.json()['prediction_id']}", json={"label": label})
                labelled += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return sent, labelled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:4242")
    parser.add_argument("--kind", choices=KINDS, default="fashion")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--feedback", type=float, default=0.0, help="share of labelled images given feedback")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parent / "fashion-mnist" / "data", help="dataset folder"
    )
    args = parser.parse_args()
    data_dir = args.data
    images = demo_images(args.kind, data_dir, read_manifest(data_dir), args.count, args.seed)
    sent, labelled = asyncio.run(send(args.url, images, args.feedback, args.concurrency))
    print(f"sent {sent} {args.kind} images to {args.url}, {labelled} with feedback labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
