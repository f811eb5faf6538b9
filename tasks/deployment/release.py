"""Moving a version into production: the registry alias and the storage pointer move together.

Deploy, promote and rollback are all this one step, pointed at different versions.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.core.audit import Event, actor, append_entry
from tasks.core.errors import MlopsError
from tasks.core.pointer import ProductionPointer, write_pointer
from tasks.core.signing import signed_by
from tasks.core.storage import read_signature, signature_url
from tasks.core.tracking import CHAMPION_ALIAS
from tasks.deployment.shadow import stop_shadow

logger = logging.getLogger(__name__)


def release_version(
    client: MlflowClient,
    storage_url: str,
    name: str,
    version: str,
    reason: str,
    metrics: dict[str, float],
    event: Event = "promotion",
    evidence: dict[str, Any] | None = None,
    who: str | None = None,
) -> ProductionPointer:
    """Verify the version's files, replace the production pointer, move the ``champion`` alias, and
    append the move (``event``, its reason and ``evidence``) to the audit trail.

    The pointer goes first because it is what services serve from; were the alias update to fail,
    re-running the same step converges both.
    """
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise MlopsError(
            f"{name} version {version} is not registered; `python -m tasks.ops models` lists them"
        ) from None
    signer = signing_key_id(storage_url, name, version)  # before the pointer: a malformed signature stops here
    pointer = write_pointer(storage_url, name, version, reason, metrics)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    client.set_model_version_tag(name, version, "deployed_at", pointer.deployed_at)
    client.set_model_version_tag(name, version, "sha256sums_digest", str(pointer.sums_sha256))
    client.set_model_version_tag(name, version, "signing_key_id", signer)
    entry = append_entry(storage_url, name, event, version, reason, pointer.previous_version, evidence, who)
    client.set_model_version_tag(name, version, "audit_entry", str(entry.sequence))
    # Now answering: nothing left to shadow.
    stop_shadow(storage_url, name, f"{event} of the shadowed version", who or actor(), None, only_version=version)
    logger.info("%s version %s is now in production (%s)", name, version, reason)
    return pointer


def signing_key_id(storage_url: str, name: str, version: str) -> str:
    """The id of the key the version's signature names, or "unsigned"; services check the signature itself."""
    signature = read_signature(storage_url, name, version)
    return "unsigned" if signature is None else signed_by(signature, signature_url(storage_url, name, version))
