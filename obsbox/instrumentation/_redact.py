"""Keeping secrets out of spans: query parameters that carry credentials, and userinfo in URLs.

>>> redact_query("user=ann&password=hunter2&api_key=abc")
'user=ann&password=REDACTED&api_key=REDACTED'
>>> redact_url("https://bob:pw@example.com/a?token=t")
'https://REDACTED:REDACTED@example.com/a?token=REDACTED'

Headers need no redaction: the request path records none except User-Agent, so Authorization, Cookie, Set-Cookie,
Proxy-Authorization and X-Api-Key can never reach a span. Parameter names are compared case-insensitively, with
`-` read as `_`; a name is sensitive when it equals one of `SENSITIVE_NAMES` or contains one of
`SENSITIVE_MARKERS` (so `access_token`, `X-Amz-Signature`, `client_secret` and `db_password` are all caught).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from obsbox.instrumentation._interned import Interned

REDACTED = "REDACTED"
SENSITIVE_NAMES = frozenset({"key", "sig", "code", "auth", "pwd", "pass", "jwt", "session", "sid"})
SENSITIVE_MARKERS = ("password", "passwd", "secret", "token", "api_key", "apikey", "signature", "credential",
                     "private_key", "authorization", "session_id", "sessionid")

def _verdict(name: str) -> bool:
    plain = unquote_plus(name) if ("%" in name or "+" in name) else name
    plain = plain.strip().lower().replace("-", "_")
    return plain in SENSITIVE_NAMES or any(marker in plain for marker in SENSITIVE_MARKERS)


# Parameter names come from clients: a bounded number of verdicts is remembered.
_verdicts: Interned[str, bool] = Interned(_verdict, limit=1024)


def is_sensitive(name: str) -> bool:
    """Whether a query parameter named `name` (as it appears in the URL) carries a secret.

    >>> is_sensitive("X-Amz-Signature"), is_sensitive("page")
    (True, False)
    """
    return _verdicts[name]


def redact_query(query: str) -> str:
    """`query` (without the `?`) with the values of sensitive parameters replaced by REDACTED."""
    if not query:
        return query
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if sep and value and _verdicts[name]:
            parts[i] = name + "=" + REDACTED
            changed = True
    return "&".join(parts) if changed else query


def redact_url(url: str) -> str:
    """An absolute URL with credentials in its userinfo and sensitive query values replaced by REDACTED."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    location, qsep, query = rest.partition("?")
    query, fsep, fragment = query.partition("#")
    authority, slash, path = location.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at:
        authority = f"{REDACTED}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    out = f"{scheme}{sep}{authority}{slash}{path}"
    if qsep:
        out += "?" + redact_query(query)
    if fsep:
        out += "#" + fragment
    return out


# In free text (log messages, access-log lines, exception messages, stack traces): every `?query` up to the next
# space or quote, the userinfo of every URL, and the Werkzeug debugger's PIN.
_QUERY_IN_TEXT = re.compile(r"\?([^\s\"'<>#?]+)")
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/\s@?#]+)@")
_DEBUGGER_PIN = re.compile(r"(Debugger PIN:?\s*)\S+", re.IGNORECASE)


def _userinfo(match: re.Match[str]) -> str:
    return match.group(1) + (f"{REDACTED}:{REDACTED}@" if ":" in match.group(2) else f"{REDACTED}@")


def redact_text(text: str) -> str:
    """`text` with secrets in the URLs, query strings and request lines it quotes replaced by REDACTED.

    >>> redact_text('127.0.0.1:5 - "GET /orders/42?token=abc&page=2 HTTP/1.1" 200')
    '127.0.0.1:5 - "GET /orders/42?token=REDACTED&page=2 HTTP/1.1" 200'
    >>> redact_text("404 Client Error: Not Found for url: https://u:p@api.example.com/v1?api_key=xyz")
    '404 Client Error: Not Found for url: https://REDACTED:REDACTED@api.example.com/v1?api_key=REDACTED'
    """
    if "?" in text:
        text = _QUERY_IN_TEXT.sub(lambda m: "?" + redact_query(m.group(1)), text)
    if "@" in text:
        text = _USERINFO_IN_TEXT.sub(_userinfo, text)
    if "PIN" in text:
        text = _DEBUGGER_PIN.sub(lambda m: m.group(1) + REDACTED, text)
    return text
