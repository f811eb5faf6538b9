"""Tell running services to reload the production model: an authenticated request, with retries.

Services also load the pointer at start-up and watch it, so one that is down now still converges.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    url: str
    ok: bool
    detail: str


def post_with_retries(
    url: str, *, headers: dict[str, str] | None = None, json: object = None, attempts: int = 3, backoff: float = 1.0
) -> tuple[bool, str]:
    """POST until a 2xx answer (with a growing pause between tries); returns (ok, what happened).

    401, 403 and 404 end the tries at once: repeating cannot fix a wrong token or route.
    """
    detail = ""
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, headers=headers, json=json, timeout=30.0)
            if response.status_code < 300:
                return True, response.text[:200]
            detail = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code in (401, 403, 404):
                break
        except httpx.HTTPError as error:
            detail = f"{type(error).__name__}: {error}"
        if attempt < attempts:
            time.sleep(backoff * attempt)
    return False, detail


def admin_token_from_environment() -> str | None:
    """The services' admin token: the one variable the service itself reads."""
    return os.environ.get("MLOPS_SERVICE_ADMIN_TOKEN")


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
