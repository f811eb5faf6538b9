"""Hostile uploads against the real service over a socket: decompression bombs are refused from their
headers, quickly and without the worker's memory growing; a large but allowed image is decoded off the
event loop, so the worker keeps answering; a flood past the queue bound is told to come back later."""

from __future__ import annotations

import asyncio
import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.service import reset_peak_memory, resident_kib, running_service_process

MIB = 1024


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gif_with_one_pixel(screen: tuple[int, int], frame_at: tuple[int, int] = (0, 0)) -> bytes:
    """A GIF whose only frame is one pixel, on a logical screen of ``screen``, placed at ``frame_at``."""
    header = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", *frame_at, 1, 1, 0)
    pixels = b"\x02" + b"\x02\x44\x01" + b"\x00"  # LZW: clear, index 0, end
    return header + frame + pixels + b"\x3b"


def animation(fmt: str) -> bytes:
    frames = [Image.new("L", (28, 28), shade) for shade in (0, 128, 255)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


BOMBS = {
    "animated GIF": (animation("GIF"), 415),
    "animated PNG": (animation("PNG"), 415),
    "huge canvas": (encode(Image.new("L", (12_000, 12_000))), 413),
    "tiny frame, huge screen": (gif_with_one_pixel((20_000, 20_000)), 413),
    "frame far outside a tiny screen": (gif_with_one_pixel((1, 1), frame_at=(15_000, 15_000)), 413),
    "1-bit, 36 megapixels": (encode(Image.new("1", (6_000, 6_000))), 413),
}


@pytest.fixture
def service(service_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, int]]:
    with running_service_process(service_env, tmp_path / "server.log") as (url, process):
        yield url, process.pid


def post(url: str, content: bytes, path: str = "/predict") -> httpx.Response:
    return httpx.post(f"{url}{path}", files={"file": ("upload", content, "application/octet-stream")}, timeout=60)


def test_bombs_are_refused_within_a_second_without_the_worker_growing(
    service: tuple[str, int], sample_images: list[Path]
) -> None:
    url, pid = service
    assert post(url, sample_images[0].read_bytes()).status_code == 200  # everything on the request path is warm
    for content in (content for content, _ in BOMBS.values()):  # each bomb's code paths once, too
        post(url, content)
    baseline = resident_kib(pid)
    reset_peak_memory(pid)
    for name, (content, status) in BOMBS.items():
        for path in ("/predict", "/explain"):
            started = time.monotonic()
            response = post(url, content, path)
            elapsed = time.monotonic() - started
            assert response.status_code == status, f"{name} on {path}: {response.text}"
            assert elapsed < 1.0, f"{name} on {path} took {elapsed:.2f} s"
    batch = [("files", (f"{n}", content, "application/octet-stream")) for n, (content, _) in enumerate(BOMBS.values())]
    assert httpx.post(f"{url}/predict/batch", files=batch, timeout=60).status_code in (413, 415)
    peak_growth = resident_kib(pid, "VmHWM") - baseline
    assert peak_growth < 100 * MIB, f"the worker's resident memory peaked {peak_growth / MIB:.0f} MiB above its start"
    assert post(url, sample_images[0].read_bytes()).status_code == 200


def test_bomb_refusals_say_what_is_wrong(service: tuple[str, int]) -> None:
    url, _ = service
    assert "animated images are not supported" in post(url, BOMBS["animated GIF"][0]).json()["detail"]
    detail = post(url, BOMBS["tiny frame, huge screen"][0]).json()["detail"]
    assert "20000x20000" in detail and "the limit is 25,000,000" in detail


def test_a_large_allowed_image_is_decoded_off_the_event_loop(
    service: tuple[str, int], sample_images: list[Path]
) -> None:
    """16 megapixels of 1-bit PNG are a few kilobytes: the header, not the byte count, says it is big."""
    url, _ = service
    large = encode(Image.fromarray(np.random.default_rng(0).random((4_000, 4_000)) > 0.5))
    assert len(large) < 4 * 1024 * 1024 and post(url, large).status_code == 200
    small = sample_images[0].read_bytes()

    async def both() -> tuple[float, float, int]:
        async with httpx.AsyncClient(timeout=120) as client:
            files = [("files", (f"{n}.png", large, "image/png")) for n in range(6)]
            slow = asyncio.create_task(client.post(f"{url}/predict/batch", files=files))
            await asyncio.sleep(0.3)  # the batch is being decoded by now
            started = time.monotonic()
            quick = await client.post(f"{url}/predict", files={"file": ("small.png", small, "image/png")})
            quick_done = time.monotonic()
            assert not slow.done(), "the large batch finished too soon to show anything: make it larger"
            assert (await slow).status_code == 200
            return quick_done - started, time.monotonic() - started, quick.status_code

    quick_seconds, slow_seconds, status = asyncio.run(both())
    assert status == 200
    assert quick_seconds < slow_seconds / 2, f"a small request waited {quick_seconds:.2f} s behind large decodes"


def test_a_flood_past_the_queue_bound_is_told_to_retry(
    service_env: dict[str, str], tmp_path: Path, sample_images: list[Path]
) -> None:
    env = {**service_env, "MLOPS_SERVICE_MAX_QUEUED_IMAGES": "64", "MLOPS_SERVICE_MAX_BATCH_IMAGES": "64"}
    with running_service_process(env, tmp_path / "server.log") as (url, process):
        images = [image.read_bytes() for image in sample_images]
        files = [("files", (f"{n}.png", images[n % len(images)], "image/png")) for n in range(64)]
        baseline = resident_kib(process.pid)

        async def flood() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=24)) as client:
                return await asyncio.gather(*(client.post(f"{url}/predict/batch", files=files) for _ in range(24)))

        responses = asyncio.run(flood())
        statuses = [response.status_code for response in responses]
        refused = [response for response in responses if response.status_code == 503]
        assert set(statuses) <= {200, 503} and 200 in statuses and refused, statuses
        assert all(response.headers["Retry-After"] == "1" for response in refused)
        assert "retry shortly" in refused[0].json()["detail"]
        assert resident_kib(process.pid) - baseline < 200 * MIB
