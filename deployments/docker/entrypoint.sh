#!/bin/bash
# Entrypoint of the app and jupyter images. With MLOPS_DATASET_GIT_URL set, a container without a
# dataset working copy clones one from the dataset registry first (its data comes from the DVC
# remote when a flow checks a revision out; revisions tagged later are fetched then).
set -euo pipefail
if [ -n "${MLOPS_DATASET_GIT_URL:-}" ]; then
    copy="${MLOPS_REPO_ROOT:-$PWD}/datasets/$(basename "$MLOPS_DATASET_GIT_URL" .git)"
    for attempt in 1 2 3 4 5; do
        [ -d "$copy/.git" ] && break
        git clone --quiet "$MLOPS_DATASET_GIT_URL" "$copy" && break
        echo "cloning $MLOPS_DATASET_GIT_URL failed (attempt $attempt); retrying" >&2
        sleep 3
    done
    # Not fatal: the container's other work goes on; a flow that needs the dataset says it is missing.
    [ -d "$copy/.git" ] || echo "could not clone $MLOPS_DATASET_GIT_URL into $copy; flows will find no dataset" >&2
fi
exec "$@"
