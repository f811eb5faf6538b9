"""A dataset repository under git + DVC: resolve a revision, compare the working copy, check it out.

The commands run non-interactively (never a prompt) through the git and dvc command lines, the
same tools a user runs by hand on the repository.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.core.errors import DatasetRevisionError

logger = logging.getLogger(__name__)

DATA_DIR = "data"
MANIFEST = "manifest.csv"
_GIT_IDENTITY = ("-c", "user.name=mlops dataset builder", "-c", "user.email=mlops@localhost")


@dataclass(frozen=True)
class WorkingCopyState:
    """How the dataset working copy relates to a resolved revision."""

    head_commit: str
    git_changes: list[str]
    dvc_changes: list[str]

    def differs_from(self, commit: str) -> bool:
        return self.head_commit != commit or bool(self.git_changes or self.dvc_changes)

    def describe(self, commit: str) -> str:
        problems = []
        if self.head_commit != commit:
            problems.append(f"HEAD is {self.head_commit[:10]}, not {commit[:10]}")
        if self.git_changes:
            problems.append(f"uncommitted git changes: {', '.join(self.git_changes[:5])}")
        if self.dvc_changes:
            problems.append(f"data differs from data.dvc: {', '.join(self.dvc_changes[:5])}")
        return "; ".join(problems) or "matches"


def run_git(repo: Path, *args: str) -> str:
    return _run(["git", *_GIT_IDENTITY, *args], repo)


def run_dvc(repo: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], repo)


def _run(command: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shown = " ".join(command[2:] if command[0] == sys.executable else command)
        raise subprocess.CalledProcessError(
            result.returncode, shown, result.stdout, f"{shown} failed in {cwd}:\n{result.stderr.strip()}"
        )
    return result.stdout


def ensure_repository(repo: Path) -> None:
    if not (repo / ".git").is_dir() or not (repo / ".dvc").is_dir():
        raise DatasetRevisionError(
            f"{repo} is not a git + DVC dataset repository; build the demo data with "
            "`make data` (python datasets/build_fashion_mnist.py) or point dataset.path at yours"
        )


def list_tags(repo: Path) -> list[str]:
    return run_git(repo, "tag", "--list").split()


LATEST = "latest"
PROVENANCE_DIR = "provenance"  # one JSON file per revision made from reviews, committed with git


def latest_tag(repo: Path) -> str:
    """The tag on the newest tagged commit (``revision: latest``): the last revision made, by history."""
    ensure_repository(repo)
    if "origin" in run_git(repo, "remote").split():  # a clone learns of revisions tagged since it was made
        try:
            run_git(repo, "fetch", "--quiet", "--tags", "origin")
        except subprocess.CalledProcessError as error:
            logger.warning("Could not fetch tags from %s's origin (%s); newest known tag used", repo, error.stderr)
    newest = run_git(repo, "rev-list", "--tags", "--topo-order", "--max-count=1").strip()
    tags = run_git(repo, "tag", "--points-at", newest, "--sort=-creatordate").split() if newest else []
    if not tags:
        raise DatasetRevisionError(f"{repo} has no tagged dataset revision; `revision: latest` needs one")
    return tags[0]


def named_revision(repo: Path, revision: str) -> str:
    """The tag ``latest`` stands for, or ``revision`` itself: what a run records as its revision."""
    return latest_tag(repo) if revision == LATEST else revision


def current_checkout(repo: Path) -> str:
    """The branch checked out, or the commit when HEAD is detached: what to return to."""
    try:
        return run_git(repo, "symbolic-ref", "--quiet", "--short", "HEAD").strip()
    except subprocess.CalledProcessError:
        return run_git(repo, "rev-parse", "HEAD").strip()


def read_provenance(repo: Path, commit: str) -> list[dict[str, object]]:
    """Every revision-from-reviews record at ``commit``, oldest first."""
    names = run_git(repo, "ls-tree", "--name-only", commit, PROVENANCE_DIR + "/").split()
    records = [json.loads(run_git(repo, "show", f"{commit}:{name}")) for name in names if name.endswith(".json")]
    return sorted(records, key=lambda record: str(record.get("created_at", "")))


def resolve_revision(repo: Path, revision: str) -> str:
    """The full commit id a tag or commit (or ``latest``) names; an unknown one is an error listing the tags.

    A working copy cloned from a dataset registry (it has an ``origin``) fetches a revision it does
    not know yet, so a worker on another host sees revisions tagged after it cloned.
    """
    ensure_repository(repo)
    revision = named_revision(repo, revision)
    try:
        return _rev_parse(repo, revision)
    except subprocess.CalledProcessError:
        pass
    if "origin" in run_git(repo, "remote").split():
        logger.info("Revision %s not in %s; fetching from its origin", revision, repo)
        try:
            run_git(repo, "fetch", "--quiet", "--tags", "origin")
        except subprocess.CalledProcessError as error:
            raise DatasetRevisionError(
                f"dataset revision {revision!r} is not in {repo}, and fetching from its origin failed: {error.stderr}"
            ) from None
        with contextlib.suppress(subprocess.CalledProcessError):
            return _rev_parse(repo, revision)
    tags = ", ".join(list_tags(repo)) or "(none)"
    raise DatasetRevisionError(f"dataset revision {revision!r} not found in {repo}; available tags: {tags}")


def _rev_parse(repo: Path, revision: str) -> str:
    return run_git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}").strip()


def working_copy_state(repo: Path) -> WorkingCopyState:
    head = run_git(repo, "rev-parse", "HEAD").strip()
    git_changes = [line[3:] for line in run_git(repo, "status", "--porcelain").splitlines() if line]
    status = yaml.safe_load(run_dvc(repo, "status", "--json") or "{}") or {}
    dvc_changes = sorted(status)
    return WorkingCopyState(head, git_changes, dvc_changes)


def checkout_revision(repo: Path, commit: str) -> None:
    """Check out ``commit`` and its data; data missing from the DVC cache is pulled from the remote."""
    logger.info("Checking out dataset %s at %s", repo, commit[:10])
    run_git(repo, "checkout", "--quiet", "--force", commit)
    try:
        run_dvc(repo, "checkout", "--force", "--quiet")
    except subprocess.CalledProcessError:
        logger.info("Data not all in the DVC cache; pulling it from the remote")
        run_dvc(repo, "pull", "--force", "--quiet")


def data_content_hash(repo: Path, commit: str) -> str:
    """DVC's content hash of the data folder at ``commit`` (the md5 of its .dir listing)."""
    text = run_git(repo, "show", f"{commit}:{DATA_DIR}.dvc")
    outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
    digest = outs[0].get("md5")
    if not digest:
        raise DatasetRevisionError(f"{repo}: {DATA_DIR}.dvc at {commit[:10]} records no content hash")
    return str(digest)
