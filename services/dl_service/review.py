"""The review page and its routes: the next image for a reviewer, and what they say it is.

A reviewer signs each request with their own token (``MLOPS_SERVICE_REVIEWERS``, name -> token),
so every stored review says who gave it; with no reviewers configured the routes are closed.
"""

from __future__ import annotations

import logging
from typing import Annotated

import fsspec
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from services.dl_service import schemas
from services.dl_service.api import PAGE_HEADERS, STATIC, bearer_matches
from services.dl_service.images import ImageRejected, decode_checked, open_checked
from services.dl_service.model import ModelManager, ModelUnavailable
from services.dl_service.service import explain_as_pngs
from tasks.core.review_queue import AlreadyReviewed, ReviewItem, ReviewQueue, UnknownReviewItem
from tasks.core.settings import Settings

logger = logging.getLogger(__name__)
router = APIRouter(tags=["review"])
UNREADABLE_IN_A_ROW = 5


async def reviewer_of(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The reviewer whose token signs the request (compared in constant time, every token tried)."""
    settings: Settings = request.app.state.settings
    reviewers = settings.service.reviewers
    if not reviewers:
        raise HTTPException(403, "review is disabled: set MLOPS_SERVICE_REVIEWERS (reviewer name -> token)")
    found = None
    for name, wanted in reviewers.items():  # every token tried: the time taken says nothing of which matched
        if bearer_matches(authorization, wanted):
            found = name
    if found is None:
        raise HTTPException(401, "missing or unknown reviewer token", headers={"WWW-Authenticate": "Bearer"})
    return found


async def queue_of(request: Request) -> ReviewQueue:
    return request.app.state.review_queue


Reviewer = Annotated[str, Depends(reviewer_of)]
QueueDep = Annotated[ReviewQueue, Depends(queue_of)]


@router.get("/review", include_in_schema=False)
async def review_page() -> FileResponse:
    return FileResponse(STATIC / "review.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/review/next", response_model=schemas.ReviewTask, responses={204: {"description": "nothing to review"}})
async def next_item(
    request: Request, reviewer: Reviewer, queue: QueueDep, skip: Annotated[list[str] | None, Query()] = None
) -> schemas.ReviewTask | Response:
    """The most useful image this reviewer has not reviewed yet (204 when the queue is empty). An item whose
    image cannot be read is set aside with the reason, and the next one served."""
    manager: ModelManager = request.app.state.manager
    if not manager.loaded:
        raise HTTPException(
            503, f"no model to explain with yet: {manager.unavailable_reason}", headers={"Retry-After": "5"}
        )
    for _ in range(UNREADABLE_IN_A_ROW):
        item = await run_in_threadpool(queue.next_for, reviewer, skip or [])
        if item is None:
            return Response(status_code=204)
        try:
            return await run_in_threadpool(_task_for, item, manager, queue)
        except UnreadableImage as error:
            logger.warning("Review item %s set aside: %s", item.item_id, error)
            await run_in_threadpool(queue.set_aside, item.item_id, f"image unreadable: {error}")
    raise HTTPException(502, f"{UNREADABLE_IN_A_ROW} queued images in a row could not be read from central storage")


@router.post("/review/{item_id}", response_model=schemas.ReviewOut, status_code=201)
async def review(
    request: Request, item_id: str, body: schemas.ReviewIn, reviewer: Reviewer, queue: QueueDep
) -> schemas.ReviewOut:
    """Say what the image shows; a second reviewer's different answer marks a disagreement."""
    manager: ModelManager = request.app.state.manager
    if not manager.loaded:  # the label is checked against the serving version's classes
        raise HTTPException(503, f"no model loaded yet: {manager.unavailable_reason}", headers={"Retry-After": "5"})
    names = manager.current.class_names
    if body.label not in names:
        raise HTTPException(422, f"label {body.label!r} is not a class of the model; one of: {', '.join(names)}")
    try:
        item = await run_in_threadpool(queue.record, item_id, body.label, reviewer)
    except UnknownReviewItem as error:
        raise HTTPException(404, str(error)) from None
    except AlreadyReviewed as error:
        raise HTTPException(409, str(error)) from None
    return schemas.ReviewOut(
        item_id=item.item_id,
        label=body.label,
        reviewer=reviewer,
        status=item.status,
        agreed_label=item.agreed_label,
        disagreement=item.disagreement,
    )


class UnreadableImage(Exception):
    """A queued image is gone from central storage or no longer an image."""


def _task_for(item: ReviewItem, manager: ModelManager, queue: ReviewQueue) -> schemas.ReviewTask:
    """Read the kept image and explain it with the serving version (one thread hop)."""
    try:
        model = manager.current
    except ModelUnavailable as error:
        raise HTTPException(503, str(error), headers={"Retry-After": "5"}) from None
    try:
        with fsspec.open(item.image_uri, "rb") as handle:
            content = handle.read()
        checked = decode_checked(content, open_checked(content, 10**9, 10**9), model.input_spec)
    except (OSError, ImageRejected) as error:
        raise UnreadableImage(f"{item.image_uri}: {error}") from None
    _, overlay, view = explain_as_pngs(model, checked)
    return schemas.ReviewTask(
        item_id=item.item_id,
        reason=item.reason,
        model_version=item.model_version,
        predicted_label=item.predicted_label,
        confidence=item.confidence,
        given_label=item.given_label,
        reviews_so_far=item.review_count,
        classes=model.class_names,
        image_png=view,
        overlay_png=overlay,
        open_items=queue.counts()["open"],
    )
