"""ListObjectsV2 answers with their ``<Contents>`` written directly (same bytes, a fifth of the CPU).

moto serializes every answer by walking the botocore model: for a 1,000-key page that is ~60,000
shape lookups and an xmltodict document, ~0.07 s of CPU per page even with the timestamps taken
directly (serializer_timestamps). In the lab moto shares the runner's two cores with the tools
it serves, so a no-op sync of a few thousand keys measured mostly moto's serializer, an emulator
cost AWS does not put on the runner's machine.

Here the page is serialized by moto without its objects, and the ``<Contents>`` elements, the
bulk of it, are written in the model's member order and inserted where moto puts them (right
after ``<IsTruncated>``). Objects with anything this does not know (a field outside the model's
Object members that moto fills, a type it does not expect, a LastModified not in moto's own
form) take moto's path for the whole page. The lab's test compares both paths byte for byte on
pages with every field moto writes.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

from moto.s3.responses import S3Response

# The Object shape's members in the model's order (botocore's s3 model), as moto writes them.
OBJECT_MEMBERS = ("Key", "LastModified", "ETag", "ChecksumAlgorithm", "ChecksumType", "Size", "StorageClass",
                  "Owner", "RestoreStatus")
OWNER_MEMBERS = ("DisplayName", "ID")
# moto's S3 LastModified text; formatted for the answer it comes out unchanged.
MOTO_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z\Z")
AFTER = "</IsTruncated>"


def element(name: str, text: str) -> str:
    return f"<{name}>{escape(text)}</{name}>" if text else f"<{name}/>"


def render_object(item: dict[str, Any]) -> str | None:
    """One ``<Contents>`` element, or None when moto's serializer has to write it."""
    if not set(item) <= {"Key", "LastModified", "ETag", "ChecksumAlgorithm", "Size", "StorageClass", "Owner"}:
        return None
    parts = ["<Contents>"]
    for name in OBJECT_MEMBERS:
        if name not in item:
            continue
        value = item[name]
        if name == "LastModified":
            if not isinstance(value, str) or not MOTO_TIMESTAMP.match(value):
                return None
            parts.append(f"<LastModified>{value}</LastModified>")
        elif name == "Size":
            # bool is an int too, and moto's serializer would write it otherwise
            if not isinstance(value, int) or isinstance(value, bool):
                return None
            parts.append(f"<Size>{value}</Size>")
        elif name == "ChecksumAlgorithm":
            if not isinstance(value, list) or not all(isinstance(entry, str) and entry for entry in value):
                return None
            parts.extend(element(name, entry) for entry in value)
        elif name == "Owner":
            if not isinstance(value, dict) or not set(value) <= set(OWNER_MEMBERS) or not value:
                return None
            if not all(isinstance(value[member], str) for member in value):
                return None
            parts.append("<Owner>" + "".join(element(member, value[member]) for member in OWNER_MEMBERS
                                             if member in value) + "</Owner>")
        else:
            if not isinstance(value, str):
                return None
            parts.append(element(name, value))
    parts.append("</Contents>")
    return "".join(parts)


def render_contents(contents: Any) -> str | None:
    if not isinstance(contents, list) or not all(isinstance(item, dict) for item in contents):
        return None
    rendered = []
    for item in contents:
        text = render_object(item)
        if text is None:
            return None
        rendered.append(text)
    return "".join(rendered)


def apply() -> None:
    original = S3Response.serialized

    def serialized(self: Any, action_result: Any) -> Any:
        result = getattr(action_result, "result", None)
        if self.data.get("Action") != "ListObjectsV2" or not isinstance(result, dict) or not result.get("Contents"):
            return original(self, action_result)
        contents = render_contents(result["Contents"])
        if contents is None:
            return original(self, action_result)
        status, headers, body = original(self, type(action_result)(dict(result, Contents=[])))
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if not isinstance(text, str) or text.count(AFTER) != 1:
            return original(self, action_result)
        text = text.replace(AFTER, AFTER + contents, 1)
        return status, headers, text.encode("utf-8") if isinstance(body, bytes) else text

    S3Response.serialized = serialized
