"""One POST with retries, for service reloads and the monitor's webhook."""

from __future__ import annotations

import time

import httpx


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
