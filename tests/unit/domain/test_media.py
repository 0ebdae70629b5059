"""Images and PDFs from file paths: ``{ type = "image", path = "{image}" }`` blocks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.media import MB, sniff
from orchestrator.domain.params import validate_params
from orchestrator.domain.spec import ItemDraft, iter_items, load_spec
from orchestrator.errors import SpecError
from tests.unit.domain.conftest import WriteSpec

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
GIF = b"GIF89a" + b"\x00" * 24
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 16
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"

HEAD = 'name = "t"\ninput = "rows.csv"\nkey = "id"\n'
IMAGE_SPEC = (
    HEAD
    + '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\n'
    + "[[request.messages]]\n"
    + 'role = "user"\n'
    + "content = [\n"
    + '  { type = "image", path = "{image}", cache_control = { type = "ephemeral" } },\n'
    + '  { type = "text", text = "Describe {id}." },\n'
    + "]\n"
)
PDF_SPEC = IMAGE_SPEC.replace(
    '{ type = "image", path = "{image}", cache_control = { type = "ephemeral" } }',
    '{ type = "document", path = "{image}", title = "{id}" }',
)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def items(path: Path) -> list[ItemDraft]:
    return list(iter_items(load_spec(path)))


def error_of(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        items(path)
    return str(caught.value)


def first_block(item: ItemDraft) -> dict[str, Any]:
    block: dict[str, Any] = item.params["messages"][0]["content"][0]
    return block


def test_images_are_read_per_row_and_sent_base64(write_spec: WriteSpec, tmp_path: Path) -> None:
    write_files(tmp_path, {"img/a.png": PNG, "img/b.jpg": JPEG, "c.gif": GIF})
    absolute = tmp_path / "c.gif"
    rows = f"id,image\na,img/a.png\nb,img/b.jpg\nc,{absolute}\n"
    drafts = items(write_spec(IMAGE_SPEC, files={"rows.csv": rows}))
    blocks = [first_block(item) for item in drafts]
    assert blocks[0] == {
        "type": "image",
        "source": {
            "type": "base64",
            "media_type": "image/png",
            "data": base64.b64encode(PNG).decode(),
        },
        "cache_control": {"type": "ephemeral"},
    }
    assert [b["source"]["media_type"] for b in blocks] == ["image/png", "image/jpeg", "image/gif"]
    assert base64.b64decode(blocks[1]["source"]["data"]) == JPEG
    for item in drafts:
        validate_params(item.params)
        assert b'"path"' not in item.params_json


def test_the_media_type_comes_from_the_bytes_not_the_name(
    write_spec: WriteSpec, tmp_path: Path
) -> None:
    write_files(tmp_path, {"photo.png": JPEG})
    (item,) = items(write_spec(IMAGE_SPEC, files={"rows.csv": "id,image\na,photo.png\n"}))
    assert first_block(item)["source"]["media_type"] == "image/jpeg"


def test_pdfs_go_in_document_blocks(write_spec: WriteSpec, tmp_path: Path) -> None:
    write_files(tmp_path, {"docs/report.pdf": PDF})
    (item,) = items(write_spec(PDF_SPEC, files={"rows.csv": "id,image\nq3,docs/report.pdf\n"}))
    assert first_block(item) == {
        "type": "document",
        "title": "q3",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
    }


def test_files_inside_tool_results_are_read_too(write_spec: WriteSpec, tmp_path: Path) -> None:
    write_files(tmp_path, {"shot.webp": WEBP})
    spec = (
        HEAD
        + '[request]\nmodel = "claude-haiku-4-5"\nmax_tokens = 16\nmessages = [\n'
        + '  { role = "user", content = "Take a screenshot of {id}" },\n'
        + '  { role = "assistant", content = [{ type = "tool_use", id = "t1", name = "shot", '
        + "input = {} }] },\n"
        + '  { role = "user", content = [{ type = "tool_result", tool_use_id = "t1", content = '
        + '[{ type = "image", path = "{image}" }] }] },\n]\n'
        + '[[request.tools]]\nname = "shot"\ninput_schema = { type = "object" }\n'
    )
    (item,) = items(write_spec(spec, files={"rows.csv": "id,image\na,shot.webp\n"}))
    image = item.params["messages"][2]["content"][0]["content"][0]
    assert image["source"]["media_type"] == "image/webp"


@pytest.mark.parametrize(
    ("files", "value", "problem"),
    [
        ({}, "img/nope.png", "file not found: img/nope.png ({root}/img/nope.png)"),
        ({"notes.txt": b"hello"}, "notes.txt", "notes.txt is not a JPEG, PNG, GIF or WebP image"),
        ({"doc.pdf": PDF}, "doc.pdf", "doc.pdf is a PDF: send it in a document block"),
        ({"img": b""}, "img", "img is not a file ({root}/img)"),
        ({}, "", "no file named (the row gives '')"),
    ],
)
def test_a_bad_image_file_names_the_row_and_field(
    write_spec: WriteSpec, tmp_path: Path, files: dict[str, bytes], value: str, problem: str
) -> None:
    if value == "img":
        (tmp_path / "img").mkdir()
    else:
        write_files(tmp_path, files)
    rows = f"id,image\nok,good.png\nbad,{value}\n"
    write_files(tmp_path, {"good.png": PNG})
    path = write_spec(IMAGE_SPEC, files={"rows.csv": rows})
    assert error_of(path) == (
        f"{tmp_path / 'rows.csv'}:3: request.messages.0.content.0.path: "
        + problem.format(root=tmp_path)
        + (" (by its bytes)" if "JPEG" in problem else "")
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (PNG, "a.bin is an image (image/png): send it in an image block"),
        (b"plain text", "a.bin is not a PDF (by its bytes); document blocks take PDFs"),
    ],
)
def test_a_bad_document_file(
    write_spec: WriteSpec, tmp_path: Path, data: bytes, problem: str
) -> None:
    write_files(tmp_path, {"a.bin": data})
    path = write_spec(PDF_SPEC, files={"rows.csv": "id,image\nk,a.bin\n"})
    assert (
        error_of(path) == f"{tmp_path / 'rows.csv'}:2: request.messages.0.content.0.path: {problem}"
    )


def test_too_large_files_are_refused_before_they_are_read(
    write_spec: WriteSpec, tmp_path: Path
) -> None:
    with (tmp_path / "big.png").open("wb") as out:  # sparse: 4 MB without writing them
        out.write(PNG)
        out.truncate(4 * MB)
    with (tmp_path / "big.pdf").open("wb") as out:
        out.write(PDF)
        out.truncate(25 * MB)
    path = write_spec(IMAGE_SPEC, files={"rows.csv": "id,image\nk,big.png\n"})
    assert error_of(path) == (
        f"{tmp_path / 'rows.csv'}:2: request.messages.0.content.0.path: big.png is 4.00 MB; "
        "an image is sent base64-encoded and may be at most 5 MB that way (a file of 3.75 MB): "
        "make it smaller"
    )
    path = write_spec(PDF_SPEC, files={"rows.csv": "id,image\nk,big.pdf\n"})
    assert error_of(path).endswith(
        "big.pdf is 25.00 MB; a PDF is sent base64-encoded and may be at most 32 MB that way "
        "(a file of 24.00 MB): make it smaller"
    )


def test_just_under_the_image_limit_is_sent(write_spec: WriteSpec, tmp_path: Path) -> None:
    with (tmp_path / "edge.png").open("wb") as out:
        out.write(PNG)
        out.truncate(5 * MB * 3 // 4)  # exactly 5 MB once base64-encoded
    (item,) = items(write_spec(IMAGE_SPEC, files={"rows.csv": "id,image\nk,edge.png\n"}))
    assert len(first_block(item)["source"]["data"]) == 5 * MB


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (
            '{ type = "image", path = "{image}", source = { type = "url", url = "u" } }',
            "request.messages.0.content.0: give path (a file) or source, not both",
        ),
        (
            '{ type = "image", path = 3 }',
            'request.messages.0.content.0.path: must be a string, like path = "{image_path}"',
        ),
    ],
)
def test_path_blocks_are_checked_when_the_spec_loads(
    write_spec: WriteSpec, block: str, problem: str
) -> None:
    spec = IMAGE_SPEC.replace(
        '{ type = "image", path = "{image}", cache_control = { type = "ephemeral" } }', block
    )
    path = write_spec(spec, files={"rows.csv": "id,image\n"})
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value) == f"{path}: {problem}"


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (b"GIF87a", "image/gif"),
        (WEBP, "image/webp"),
        (PDF, "application/pdf"),
        (b"\n\n%PDF-1.4", "application/pdf"),
        (b"BM\x00\x00", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_sniff(data: bytes, media_type: str | None) -> None:
    assert sniff(data) == media_type
