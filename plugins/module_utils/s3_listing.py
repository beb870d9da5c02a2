# Copyright: cutover.migration contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The objects of a ListObjectsV2 page read straight from its XML (plain Python, no botocore).

botocore builds an element tree of every page and walks it against the model: ~50 ms of CPU per
1,000 keys, the largest part of a no-op run over a big bucket (100 pages for 100,000 objects).
The copy reads four fields of each object, so ``split_listing_page`` takes the ``<Contents>``
elements out of the page and reads those four (and LastModified, as text) with regular
expressions; the rest of the page, without its objects, is left to botocore, so every other
field, the response metadata and the URL decoding of keys stay botocore's.

Anything it does not read exactly as an XML parser would (a CDATA section, a carriage return,
which XML turns into a line feed, an object without a key, size or ETag, ``<Contents>`` not in
the page's top level) makes it answer None, and the whole page goes to botocore.
"""

from __future__ import annotations

import html
import re
from typing import Any

CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.DOTALL)
FIELDS = {name: re.compile(rb"<" + name.encode() + rb">([^<]*)</" + name.encode() + rb">")
          for name in ("Key", "LastModified", "ETag", "Size", "StorageClass")}
REQUIRED = ("Key", "ETag", "Size")
# Elements that hold nested text and would be read wrongly as part of an object's fields.
NESTED_OBJECT_ELEMENTS = re.compile(rb"<(?:Contents|CommonPrefixes)[\s>/]")


def xml_text(raw: bytes) -> str:
    text = raw.decode("utf-8")
    # Only the five predefined entities and character references occur in XML text; html.unescape
    # reads both (one pass, so "&amp;lt;" stays "&lt;").
    return html.unescape(text) if "&" in text else text


def read_object(block: bytes) -> dict[str, Any] | None:
    if NESTED_OBJECT_ELEMENTS.search(block):
        return None
    item: dict[str, Any] = {}
    for name, pattern in FIELDS.items():
        found = pattern.findall(block)
        if len(found) > 1:
            return None
        if found:
            item[name] = xml_text(found[0])
    if not all(name in item for name in REQUIRED) or not item["Size"].isdigit():
        return None
    item["Size"] = int(item["Size"])
    return item


def split_listing_page(body: bytes) -> tuple[bytes, list[dict[str, Any]]] | None:
    """(the page without its ``<Contents>`` elements, the objects they held), or None when the
    page has to be parsed whole by an XML parser."""
    if b"<![CDATA[" in body or b"\r" in body:
        return None
    objects = []
    for block in CONTENTS.findall(body):
        item = read_object(block)
        if item is None:
            return None
        objects.append(item)
    if not objects:
        return None
    rest = CONTENTS.sub(b"", body)
    if b"<Contents" in rest:
        return None
    return rest, objects
