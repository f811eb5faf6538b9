#!/bin/bash
# The dataset registry: every git repository under /srv/datasets, read-only over git:// (port 9418).
# On first start it builds the Fashion-MNIST demo repository (MLOPS_DEMO_DATASET_SIZE: full or
# small), its data pushed to the DVC remote in the object store.
set -euo pipefail
root=/srv/datasets
if [ ! -d "$root/fashion-mnist/.git" ]; then
    python datasets/build_fashion_mnist.py --repo "$root/fashion-mnist" \
        --source /usr/share/datasets/fashion-mnist --size "${MLOPS_DEMO_DATASET_SIZE:-full}" \
        --dvc-remote s3://mlops/dvc/fashion-mnist
fi
exec git daemon --reuseaddr --export-all --informative-errors --base-path="$root" "$root"
