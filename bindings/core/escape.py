"""Names and messages in each output format: function names, mark texts, paths and command
lines come from the profiled program and may hold any character.

A terminal line, XML 1.0 (which forbids most control characters even as character
references) and a graphviz label (report/dot.py, where the `graphviz` package adds dot's own
escapes) get them visibly as `\\n`, `\\x01`, and the characters that reorder or break
what a terminal shows (bidirectional controls, line and paragraph separators) as
`\\u202e`; JSON inside an HTML <script> gets its `<`, `>` and `&` as escapes, so that no
name can end the script; a CSV cell a spreadsheet would take for a formula starts with
`'`."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, lone surrogates (bytes that were not UTF-8, decoded with
# surrogateescape), the two non-characters XML forbids, and the bidirectional controls
# and line and paragraph separators (Trojan Source, CVE-2021-42574).
_INVISIBLE_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
# What a spreadsheet takes for a formula at a cell's start (OWASP's CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# What XML 1.0 cannot hold at all (tabs and line breaks it can).
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def visible(text: str) -> str:
    """`text` with each invisible character written as an escape: \\n, \\r, \\t, \\xHH,
    or \\uHHHH; a byte that was not UTF-8 (a surrogate escape) as \\xHH of that byte."""
    return _INVISIBLE_RE.sub(_escape_char, text)


def _escape_char(m: re.Match) -> str:
    char = m[0]
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def xml_text(text: str) -> str:
    """Text for an XML element's content, on one line."""
    # xml.sax.saxutils.escape would do, but importing it costs the command lines 40 ms
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def xml_chars(text: str) -> str:
    """`text` with the characters XML 1.0 cannot hold written as escapes (see visible);
    tabs and line breaks stay. For text that an XML writer escapes otherwise."""
    return _NOT_XML_RE.sub(_escape_char, text)


def spreadsheet_cell(text: str) -> str:
    """A CSV cell of text that a spreadsheet shows as text: one that starts as a formula
    would (`=`, `+`, `-`, `@`, a tab or a carriage return) gets a `'` before it."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def script_json(data: object) -> str:
    """`data` as JSON to place inside an HTML <script> element: `<`, `>` and `&` as \\u
    escapes (`</script>` or `<!--` in a name would change how the page parses), and every
    other non-ASCII character too, U+2028 and U+2029 among them (json's ensure_ascii)."""
    import json

    text = json.dumps(data, separators=(",", ":"))
    return re.sub("[<>&]", lambda m: _SCRIPT_UNSAFE[m[0]], text)
