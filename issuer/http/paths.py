"""URL path checks made before routing and authorization (pure).

Issue 9 item 10: a ``:`` in a namespace or a NUL anywhere in a URL reached the store, which
refuses such addresses, and came back as 500 with a traceback (and a dropped keep-alive
connection), for any authenticated caller, before authorization. Kubernetes never stores such
names (namespaces are DNS labels, object names DNS subdomains or path segments;
apimachinery ``validation/path.IsValidPathSegmentName``, and ``registry/generic/registry/store.go``
``NamespaceKeyFunc`` answers 400 "Name parameter invalid" for a segment it cannot use), so nothing
can exist at such a path: :func:`path_problem` names what is wrong and the app answers 400
``BadRequest`` on every route, before authentication is even looked at.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["path_problem"]

#: C0 controls and DEL: never part of a Kubernetes name, and NUL cannot be stored at all.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def path_problem(path: str) -> str | None:
    """Why the (percent-decoded) request ``path`` cannot name anything, or None if it may."""
    if _CONTROL.search(path):
        return f"invalid request path {path!r}: may not contain control characters such as NUL"
    segments = path.split("/")
    for i, segment in enumerate(segments[:-1]):
        if segment == "namespaces":
            namespace = segments[i + 1]
            if ":" in namespace:
                return f"invalid namespace {namespace!r}: may not contain ':'"
    return None
