"""Images and PDFs from file paths: a content block with ``path`` instead of ``source``.

In ``[request]`` a block ``{ type = "image", path = "{image_path}" }`` (or
``{ type = "document", path = "{pdf}" }``) names a file per row; each row's file is
read and sent as ``source = { type = "base64", media_type = ..., data = ... }``. The
media type comes from the file's first bytes (a ``.png`` holding a JPEG is sent as
image/jpeg, as the API checks the bytes against it). Paths are relative to the spec's
directory, or absolute. Limits are checked on the file's size before it is read:

* an image may be at most 5 MB base64-encoded (the API's per-image limit for base64
  images, from Anthropic's vision guide; a file of up to 3.75 MB);
* a PDF at most 32 MB base64-encoded (the Messages API's request size limit, §7: 413
  ``request_too_large`` above it, which the PDF guide gives as its maximum; a file of up
  to 24 MB). The whole request must also fit ``[batching] max_bytes`` (256 MB per batch,
  §0), checked when the job is recorded.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Block types that may name a file with ``path``.
PATH_BLOCKS = ("image", "document")
MB = 1024 * 1024
#: Base64 characters per block: images 5 MB (per image), PDFs 32 MB (the request limit).
MAX_BASE64 = {"image": 5 * MB, "document": 32 * MB}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
PDF_TYPE = "application/pdf"
_SNIFF_BYTES = 1024


class MediaError(Exception):
    """A row's file can't be sent; ``path`` is the field (``messages.0.content.1.path``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def check_path_blocks(request: Mapping[str, Any]) -> bool:
    """Check the ``path`` blocks of ``[request]``; True when there is any.

    Raises ValueError (``request.messages.0.content.0: ...``) for a block giving both
    ``path`` and ``source``, or a ``path`` that is not a string.
    """
    found = False
    for block, where in _path_blocks(request.get("messages"), "request.messages"):
        if "source" in block:
            raise ValueError(f"{where}: give path (a file) or source, not both")
        if not isinstance(block["path"], str):
            raise ValueError(f'{where}.path: must be a string, like path = "{{image_path}}"')
        found = True
    return found


def embed_files(params: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """``params`` with every ``path`` block replaced by a base64 ``source`` block.

    Blocks are replaced in place (``params`` is freshly rendered for one row); raises
    :class:`MediaError` naming the field for a missing, unsupported or too large file.
    """
    for block, where in _path_blocks(params.get("messages"), "messages"):
        file = block.pop("path")
        block["source"] = _source(str(block["type"]), file, base_dir, f"{where}.path")
    return params


def _path_blocks(node: Any, where: str) -> list[tuple[dict[str, Any], str]]:
    """Every image/document block with ``path`` under ``node``, with its dotted path
    (content lists nest: a tool_result's content may hold images and documents)."""
    found: list[tuple[dict[str, Any], str]] = []
    if isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_path_blocks(item, f"{where}.{index}"))
    elif isinstance(node, dict):
        if node.get("type") in PATH_BLOCKS and "path" in node:
            found.append((node, where))
        for key, value in node.items():
            if isinstance(value, list | dict):
                found.extend(_path_blocks(value, f"{where}.{key}"))
    return found


def _source(kind: str, value: Any, base_dir: Path, where: str) -> dict[str, str]:
    if not isinstance(value, str) or not value.strip():
        raise MediaError(where, f"no file named (the row gives {value!r})")
    file = (base_dir / value).resolve()
    try:
        size = file.stat().st_size
        if not file.is_file():
            raise MediaError(where, f"{value} is not a file ({file})")
        limit = MAX_BASE64[kind]
        if _base64_size(size) > limit:
            raise MediaError(where, _too_large(value, kind, size, limit))
        data = file.read_bytes()
    except FileNotFoundError:
        raise MediaError(where, f"file not found: {value} ({file})") from None
    except OSError as exc:
        raise MediaError(where, f"cannot read {value}: {exc.strerror}") from None
    media_type = _media_type(kind, value, data, where)
    return {
        "type": "base64",
        "media_type": media_type,
        "data": base64.b64encode(data).decode("ascii"),
    }


def _base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _too_large(name: str, kind: str, size: int, limit: int) -> str:
    what = "an image" if kind == "image" else "a PDF"
    return (
        f"{name} is {size / MB:,.2f} MB; {what} is sent base64-encoded and may be at most "
        f"{limit // MB} MB that way (a file of {limit * 3 / 4 / MB:,.2f} MB): make it smaller"
    )


def sniff(data: bytes) -> str | None:
    """The media type the file's first bytes show, or None when not one the API takes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"%PDF-" in data[:_SNIFF_BYTES]:
        return PDF_TYPE
    return None


def _media_type(kind: str, name: str, data: bytes, where: str) -> str:
    found = sniff(data)
    if kind == "image":
        if found in IMAGE_TYPES:
            return found
        if found == PDF_TYPE:
            raise MediaError(where, f"{name} is a PDF: send it in a document block")
        raise MediaError(where, f"{name} is not a JPEG, PNG, GIF or WebP image (by its bytes)")
    if found == PDF_TYPE:
        return found
    if found in IMAGE_TYPES:
        raise MediaError(where, f"{name} is an image ({found}): send it in an image block")
    raise MediaError(where, f"{name} is not a PDF (by its bytes); document blocks take PDFs")
