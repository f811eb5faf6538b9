#!/bin/bash
# Entrypoint of the app and jupyter images. With MLOPS_DATASET_GIT_URL set, a container without a
# dataset working copy clones one from the dataset registry first (its data comes from the DVC
# remote when a flow checks a revision out; revisions tagged later are fetched then).
set -euo pipefail
if [ -n "${MLOPS_DATASET_GIT_URL:-}" ]; then
    copy="${MLOPS_REPO_ROOT:-$PWD}/datasets/$(basename "$MLOPS_DATASET_GIT_URL" .git)"
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        [ -d "$copy/.git" ] && break
        git clone --quiet "$MLOPS_DATASET_GIT_URL" "$copy" && break
        echo "dataset registry $MLOPS_DATASET_GIT_URL not reachable (attempt $attempt); retrying" >&2
        sleep 3
    done
    [ -d "$copy/.git" ] || { echo "could not clone $MLOPS_DATASET_GIT_URL" >&2; exit 1; }
fi
exec "$@"
