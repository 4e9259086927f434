"""What may leave the server: every message the API and the page show goes
through `public`, which puts a placeholder where a server path was and cuts
the text to a few hundred characters, so neither a file system layout nor a
caller's 10 MB input travels back (the server's own log keeps the whole)."""

import re

MAX_MESSAGE = 300
# absolute POSIX paths, home-relative ones and Windows drive paths, not URLs
_PATH = re.compile(r"(?<![\w.:/~])(?:~|[A-Za-z]:\\|/)(?:[^\s'\"`,;)\]:]|:(?!\s|$))*")


def public(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` without server paths, on one line, at most `limit` characters."""
    text = " ".join(_PATH.sub(_placeholder, str(text)).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _placeholder(match: re.Match) -> str:
    path = match.group(0)
    return path if path in ("/", "~") else "<path>"
