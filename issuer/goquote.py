"""Go's ``%q`` formatting and kube's ``RegexError`` text (pure; no imports from the issuer).

Kubernetes builds its error texts with ``fmt.Sprintf("%q", ...)`` and, for names and labels,
apimachinery's ``validation.RegexError``; the API errors (:mod:`issuer.api.errors`), validation
(:mod:`issuer.api.validation`, :mod:`issuer.selectors`), the token review decisions
(:mod:`issuer.review`) and the RBAC evaluator (:mod:`issuer.authz`) reproduce those texts byte
for byte with these helpers. They sit at the bottom of the import graph so that every layer can
use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["go_quote", "go_quote_list", "regex_error"]

_GO_ESCAPES: Final[dict[str, str]] = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(s: str) -> str:
    """Go's ``%q`` / ``strconv.Quote`` for a string: double quotes, Go escapes, printable kept."""
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: Iterable[str]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]`` (``[]`` when empty)."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """kube's ``validation.RegexError`` text (apimachinery/pkg/util/validation/validation.go),
    including its double space between examples."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            out += " or "
        out += f"'{ex}', "
    return out + f"regex used for validation is '{fmt}')"
