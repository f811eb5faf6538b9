"""How the image of a /predict request arrives: as the raw body with an image Content-Type (as Triton
and TF Serving take binary inputs), or as the multipart form field ``file``; and how the OpenAPI page
documents both. Every refusal is an ``ImageRejected`` with a status and a reason that says how to send it."""

from __future__ import annotations

from typing import Any

from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.requests import Request

from services.dl_service.images import ImageRejected

NO_IMAGE = (
    "send the image as the multipart form field 'file', or as the request body with its own "
    "Content-Type (image/png, image/jpeg, image/gif or image/bmp)"
)
_BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = {  # the two ways to send the image, for the OpenAPI page (the route reads the body itself)
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {**_BINARY["schema"], "description": "the image: PNG, JPEG, GIF or BMP"}},
                }
            },
            **{f"image/{kind}": _BINARY for kind in ("png", "jpeg", "gif", "bmp")},
        },
    },
}
REQUEST_ID_HEADER = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "the caller's own id for the request, kept in the prediction log",
    "schema": {"type": "string"},
}
PREDICT_REQUEST = {**PREDICT_BODY, "parameters": [REQUEST_ID_HEADER]}


async def read_image_upload(request: Request, limit: int) -> bytes:
    """The one image of a request: the raw body when its Content-Type is an image type (no multipart to
    parse, as Triton and TF Serving take binary inputs), else the multipart form field ``file``. At most
    limit + 1 bytes are held, so the checks refuse an oversized upload without reading all of it."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type.startswith("image/"):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # refused before a byte of it is read
            raise ImageRejected(413, f"upload is {int(declared):,} bytes; the limit is {limit:,}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                break
        return bytes(body)
    if content_type != "multipart/form-data":
        raise ImageRejected(415, f"Content-Type {content_type or '(none)'} is not an image upload: {NO_IMAGE}")
    plain = await plain_form_file(request, limit)
    if plain is not None:
        return plain
    async with request.form(max_files=1) as form:  # any other form: the general parser (it reads the cached body)
        upload = form.get("file")
        if not isinstance(upload, StarletteUpload):
            raise ImageRejected(422, f"no 'file' field in the form: {NO_IMAGE}")
        return await upload.read(limit + 1)


FORM_FRAMING_BYTES = 16 * 1024  # a plain form's boundaries and part headers around the image


async def plain_form_file(request: Request, limit: int) -> bytes | None:
    """The image of the form every client library sends for one file (curl -F, requests, httpx): a single
    part named ``file`` with a filename, no preamble, the closing boundary after it. Found with two searches
    in the body instead of python-multipart's parser, which costs more per request than all of the image
    checks. None for any other form (other fields, two files, no declared length, an upload too large
    to hold): the general parser reads those, from the body as cached here, with the same outcome."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or int(declared) > limit + FORM_FRAMING_BYTES:
        return None
    boundary = parse_options_header(request.headers["content-type"])[1].get(b"boundary")
    if not boundary:
        return None
    body = await request.body()
    delimiter = b"--" + boundary
    if not body.startswith(delimiter + b"\r\n"):
        return None
    headers_end = body.find(b"\r\n\r\n", len(delimiter))
    if headers_end < 0 or not _is_the_file_part(body[len(delimiter) + 2 : headers_end]):
        return None
    content_end = body.find(b"\r\n" + delimiter, headers_end + 4)
    if content_end < 0 or not body.startswith(b"--", content_end + 2 + len(delimiter)):  # not the closing one
        return None
    return body[headers_end + 4 : min(content_end, headers_end + 4 + limit + 1)]


def _is_the_file_part(headers: bytes) -> bool:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            disposition, options = parse_options_header(value)
            return disposition == b"form-data" and options.get(b"name") == b"file" and b"filename" in options
    return False
