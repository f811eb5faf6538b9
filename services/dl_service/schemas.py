"""Request and response bodies of the API (kept apart from the storage rows)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ClassProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    prediction_id: str = Field(description="pass it to POST /feedback/{prediction_id}")
    model_name: str
    model_version: str
    label: str
    confidence: float
    top_k: list[ClassProbability]
    probabilities: dict[str, float]
    prediction_set: list[str] | None = Field(
        None, description="classes that hold the true one with probability 1 - alpha (conformal), most likely first"
    )
    ood_score: float | None = Field(None, description="higher: less like the training images")
    ood: bool | None = Field(None, description="out of distribution: the score passed the version's threshold")
    abstain: bool = Field(False, description="do not act on this answer alone; abstain_reason says why")
    abstain_reason: str | None = None
    latency_ms: float


class BatchPrediction(BaseModel):
    predictions: list[Prediction]


class Explanation(Prediction):
    heatmap_png: str = Field(description="Grad-CAM heat map, RGBA PNG, base64; transparent where cold")
    overlay_png: str = Field(description="the heat map blended over the image, PNG, base64")
    image_png: str = Field(description="the model's view of the image (after preprocessing), PNG, base64")


class FeedbackIn(BaseModel):
    label: str = Field(min_length=1, description="the true class, one of the model's class names")


class FeedbackOut(BaseModel):
    prediction_id: str
    label: str
    recorded_at: str


class ReloadOut(BaseModel):
    version: str | None
    changed: bool
    detail: str
    shadow_version: str | None = Field(None, description="the version also run in shadow, never answering")


class Readiness(BaseModel):
    ready: bool
    model_name: str
    model_version: str | None
    detail: str
    shadow_version: str | None = None


class ReviewTask(BaseModel):
    """The next image for a reviewer, with what the model said and where it looked."""

    item_id: str = Field(description="pass it to POST /review/{item_id}")
    reason: str = Field(description="why it is in the queue")
    model_version: str | None
    predicted_label: str | None
    confidence: float | None
    given_label: str | None = Field(None, description="the label a training image carries now (label screening)")
    reviews_so_far: int
    classes: list[str] = Field(description="the labels to choose from: the serving version's classes")
    image_png: str = Field(description="the image as the model sees it, PNG, base64")
    overlay_png: str = Field(description="Grad-CAM of the serving version over the image, PNG, base64")
    open_items: int = Field(description="items waiting in the queue")


class ReviewIn(BaseModel):
    label: str = Field(min_length=1, description="the true class, one of the model's class names")


class ReviewOut(BaseModel):
    item_id: str
    label: str
    reviewer: str
    status: str = Field(description="open (needs more reviews), agreed, or added (in a dataset revision)")
    agreed_label: str | None
    disagreement: bool = Field(description="reviews of this item name different labels")
