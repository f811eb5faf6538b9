#!/bin/bash
# The dataset registry: every git repository under /srv/datasets over git:// (port 9418); fetch, and
# push of new revision tags.
# On first start it builds the Fashion-MNIST demo repository (MLOPS_DEMO_DATASET_SIZE: full or
# small), its data pushed to the DVC remote in the object store.
set -euo pipefail
root=/srv/datasets
if [ ! -d "$root/fashion-mnist/.git" ]; then
    python datasets/build_fashion_mnist.py --repo "$root/fashion-mnist" \
        --source /usr/share/datasets/fashion-mnist --size "${MLOPS_DEMO_DATASET_SIZE:-full}" \
        --dvc-remote s3://mlops/dvc/fashion-mnist
fi
# receive-pack: the add-reviews flow pushes the tag of each revision it makes (tags only, never a branch)
exec git daemon --reuseaddr --export-all --enable=receive-pack --informative-errors --base-path="$root" "$root"
