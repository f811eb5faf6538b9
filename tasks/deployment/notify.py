"""Tell running services to reload the production model: an authenticated request, with retries.

Services also load the pointer at start-up and watch it, so one that is down now still converges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.core.http import post_with_retries

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    url: str
    ok: bool
    detail: str


def request_reload(url: str, token: str | None, attempts: int = 3, backoff: float = 1.0) -> ReloadOutcome:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ok, detail = post_with_retries(url, headers=headers, attempts=attempts, backoff=backoff)
    return ReloadOutcome(url, ok, detail)


def notify_services(urls: list[str], token: str | None) -> list[ReloadOutcome]:
    outcomes = [request_reload(url, token) for url in urls]
    for outcome in outcomes:
        level = logging.INFO if outcome.ok else logging.WARNING
        logger.log(level, "Reload %s: %s %s", outcome.url, "ok" if outcome.ok else "failed", outcome.detail)
    if not urls:
        logger.info("No service reload URLs configured; services pick up the new pointer by watching it")
    elif not any(o.ok for o in outcomes):
        logger.warning("No service was reachable; each will load the new pointer when it starts or next polls")
    return outcomes
