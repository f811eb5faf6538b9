"""Create the stack's buckets in the object store if they are missing (the storage-init job).

    python -m deployments.stack.create_buckets mlops mlflow

The endpoint and credentials come from the environment as every S3 client here reads them
(AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Waits up to a minute for the
store to answer, so it can run as soon as the store's container has started.
"""

from __future__ import annotations

import argparse
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def create_buckets(names: list[str], wait_seconds: float = 60) -> list[str]:
    """The buckets this call created (existing ones are left as they are)."""
    client = boto3.client("s3")
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
            break
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    created = [name for name in names if name not in existing]
    for name in created:
        client.create_bucket(Bucket=name)
    return created


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("buckets", nargs="+")
    args = parser.parse_args()
    created = create_buckets(args.buckets)
    print(f"buckets {', '.join(args.buckets)} ready ({len(created)} created)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
