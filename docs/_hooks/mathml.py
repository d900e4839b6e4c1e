"""MkDocs hook: the TeX that ``pymdownx.arithmatex`` marks up, as MathML at build time.

``arithmatex`` (``generic: true``) leaves ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>`` for a JavaScript renderer to typeset in the
browser, which would mean loading MathJax or KaTeX from the network. Instead this hook
converts each formula to MathML with ``latex2mathml`` (pure Python) while the site is
built, and browsers render MathML natively: no script, no fonts, no network.

A formula that ``latex2mathml`` cannot convert, or a missing ``latex2mathml``, is logged
as a warning, so that ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.hooks.mathml")

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])"
    r"\s*</(?P=tag)>",
    re.DOTALL,
)

try:
    from latex2mathml.converter import convert as _convert
except ImportError:  # pragma: no cover - reported at build time
    _convert = None


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """Replaces every arithmatex formula of the page by its MathML."""
    if "arithmatex" not in html_text:
        return html_text
    if _convert is None:
        log.warning(
            "latex2mathml is not installed: the formulas of %s stay TeX "
            "(pip install latex2mathml, part of the docs extra)",
            page.file.src_path,
        )
        return html_text

    def replace(match: re.Match) -> str:
        block = match.group("block") is not None
        tex = html.unescape(match.group("block") if block else match.group("inline"))
        try:
            mathml = _convert(tex.strip(), display="block" if block else "inline")
        except Exception as e:  # noqa: BLE001 - any failure is a build warning
            log.warning("%s: cannot convert formula %r to MathML: %s", page.file.src_path, tex, e)
            return match.group(0)
        tag = match.group("tag")
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _MATH.sub(replace, html_text)
