"""How an automatic reply's text is written for Exchange (EWS and Graph alike)."""

from __future__ import annotations

import html


def reply_html(message: str) -> str:
    """Exchange shows automatic replies as HTML: the text escaped, its line breaks kept."""
    lines = html.escape(message.rstrip("\n")).split("\n")
    return "<html><body>" + "<br>\n".join(lines) + "</body></html>"
