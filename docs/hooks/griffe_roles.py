"""Griffe extension for the API reference. featavg's docstrings are plain text with Sphinx
roles, not Markdown; two things would render wrongly:

* roles (:func:`run`, :class:`~.spec.Check`, :mod:`.capture`) would show verbatim: each
  becomes an inline code span of the name (the last component after ``~``), so the build
  needs no cross-reference to resolve and a module renamed elsewhere cannot break it;
* Python such as ``on_record[i](epoch, model)`` outside a code span would read as a
  Markdown link: the ``](`` is escaped there.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):`(~?)([^`]+)`")
# code spans (``x`` or `x`) are left alone; everything between them is prose
_CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`)", re.DOTALL)


def _code_span(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def as_markdown(text: str) -> str:
    """The docstring ``text`` with roles as code spans and link-like ``](`` escaped."""
    text = _ROLE.sub(_code_span, text)
    parts = _CODE_SPAN.split(text)
    # split() with one capturing group: prose at even indices, code spans at odd ones
    return "".join(p if i % 2 else p.replace("](", "]\\(") for i, p in enumerate(parts))


class DocstringsAsMarkdown(griffe.Extension):
    """Apply :func:`as_markdown` to every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = as_markdown(obj.docstring.value)
