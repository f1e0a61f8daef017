"""A report page parsed with the standard library, for tests that need no browser."""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser

import attrs


@attrs.define
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = attrs.Factory(list)

    @property
    def text(self) -> str:
        """The text inside it (kept for <script>, <style> and elements with an id)."""
        return "".join(self.parts)


_VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "source", "base", "wbr"})


class Page(HTMLParser):
    """Every start tag with its attributes; the text of the page, of its <script> and
    <style> elements, and of every element that has an id."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.text_parts: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attributes})
        self.elements.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {name: value or "" for name, value in attributes}))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            element = self._open.pop()
            if element.tag == "script":
                self.scripts.append(element.text)
            elif element.tag == "style":
                self.styles.append(element.text)
            if element.tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text_parts.append(data)
        for element in self._open:
            if element.tag in ("script", "style") or "id" in element.attrs:
                element.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def all(self, tag: str, **wanted: str) -> list[Element]:
        """Elements of `tag` whose attributes include `wanted` (class_ for class: one of
        the element's classes)."""
        found = []
        for element in self.elements:
            if element.tag != tag:
                continue
            ok = True
            for name, value in wanted.items():
                name = name.rstrip("_").replace("_", "-")
                have = element.attrs.get(name)
                if name == "class":
                    ok = ok and value in (have or "").split()
                else:
                    ok = ok and have == value
            if ok:
                found.append(element)
        return found

    def by_id(self, ident: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == ident]
        return element


def csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"
