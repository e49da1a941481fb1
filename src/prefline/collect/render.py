"""Safe rendering of model output: a small markdown subset on top of full HTML escaping.

Everything is escaped FIRST and markup is only ever added around escaped text, so no input
can produce a tag or attribute of its own. In model output links stay text (never
clickable); in campaign instructions (``links=True``) ``[text](url)`` and bare URLs become
links, but only to http(s) URLs, opening in a new tab with ``rel="noopener noreferrer"``,
so a ``javascript:`` URL cannot run either. Supported: fenced code blocks, inline code, bold,
italics, headings, bullet/numbered lists, paragraphs and line breaks.
"""

from __future__ import annotations

import re
from html import escape

from markupsafe import Markup

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_INLINE = [
    (re.compile(r"`([^`\n]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*\n]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])"), r"<em>\1</em>"),
]
# On escaped text: quotes are entities, so a URL cannot leave its attribute; '*' and '`'
# are not URL characters here, so bold/italics/code never reach into an href.
_URL = r"https?://(?:(?!&quot;|&#x27;|&lt;|&gt;)[^\s<>*`()\[\]])+"
_LINK = re.compile(rf"\[([^\]\n]+)\]\(({_URL})\)|(?<![\w/=])({_URL})")
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _link(m: re.Match[str]) -> str:
    if m.group(2):
        url, text, after = m.group(2), m.group(1), ""
    else:  # a bare URL: sentence punctuation after it is not part of it
        url = m.group(3).rstrip(".,:!?")
        text, after = url, m.group(3)[len(url):]
    return f'<a href="{url}" target="_blank" rel="noopener noreferrer">{text}</a>{after}'


def _inline(escaped: str, links: bool = False) -> str:
    """Inline markup on already-escaped text; code spans are protected from the rest."""
    parts = re.split(r"(`[^`\n]+`)", escaped)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{part[1:-1]}</code>")
            continue
        for pattern, repl in _INLINE[1:]:
            part = pattern.sub(repl, part)
        if links:
            part = _LINK.sub(_link, part)
        out.append(part)
    return "".join(out)


def _flush(block: list[str], out: list[str], links: bool = False) -> None:
    if not block:
        return
    items = [_LIST.match(line) for line in block]
    if all(items):
        tag = "ol" if re.match(r"^\s*\d", block[0]) else "ul"
        lis = "".join(f"<li>{_inline(m.group(1), links)}</li>" for m in items if m)
        out.append(f"<{tag}>{lis}</{tag}>")
    else:
        out.append("<p>" + "<br>".join(_inline(line, links) for line in block) + "</p>")
    block.clear()


def render_markdown(text: str | None, links: bool = False) -> Markup:
    """Markdown-ish text → safe HTML (``Markup``); raw HTML in the input stays visible text.
    ``links``: make http(s) links clickable (campaign instructions, not model output)."""
    out: list[str] = []
    block: list[str] = []
    code: list[str] | None = None
    lang = ""
    for raw in escape(text or "", quote=True).split("\n"):
        fence = _FENCE.match(raw)
        if code is not None:
            if fence and not fence.group(1):
                out.append(f'<pre><code class="lang-{lang}">' + "\n".join(code) + "</code></pre>")
                code = None
            else:
                code.append(raw)
            continue
        if fence:
            _flush(block, out, links)
            code, lang = [], fence.group(1)
            continue
        heading = _HEADING.match(raw)
        if heading:
            _flush(block, out, links)
            level = min(len(heading.group(1)) + 2, 6)  # keep model headings below page titles
            out.append(f"<h{level}>{_inline(heading.group(2), links)}</h{level}>")
        elif raw.strip():
            block.append(raw)
        else:
            _flush(block, out, links)
    _flush(block, out, links)
    if code is not None:  # an unclosed fence still shows its code
        out.append(f'<pre><code class="lang-{lang}">' + "\n".join(code) + "</code></pre>")
    return Markup("\n".join(out))
