"""URL text: joining relative names onto a local path or URL, and showing a URL without its credentials.

Pure string functions (stdlib only), so the layout contract (``schemas/layout.py``) and storage share them.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

# Query parameter names (lower case) that carry credentials or signatures.
_SECRET_PARTS = ("sig", "token", "secret", "passw", "credential", "key", "auth")
_SECRET_PREFIXES = ("x-amz-", "x-goog-", "x-ms-")


def join(base: str, *parts: str) -> str:
    """Join relative parts onto a local path or URL with '/' (parts' own leading/trailing '/' are dropped)."""
    out = base
    for part in parts:
        part = part.strip("/")
        if not part:
            continue
        if not out:
            out = part
        elif out.endswith("/"):
            out += part
        else:
            out += "/" + part
    return out


def _secret_param(name: str) -> bool:
    name = name.lower()
    return name.startswith(_SECRET_PREFIXES) or any(part in name for part in _SECRET_PARTS)


def _redact_one(url: str) -> str:
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query and any(_secret_param(name) for name, _ in parse_qsl(query, keep_blank_values=True)):
        query = ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(url: str) -> str:
    """The URL without credentials (user:pass@) and without a query string that carries a signature/token."""
    return "::".join(_redact_one(piece) for piece in str(url).split("::"))
