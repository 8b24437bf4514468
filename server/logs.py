"""Logging set-up: one line per record, key=value context, and secrets redacted at the source.

Code never logs a secret on purpose; the redaction filter is the belt to those braces, so a
secret that slips into an exception message or a library's log line still never reaches a log
(matched in any letter case: an upstream may echo it upper-cased). Session ids are proof enough
to reach a conversation's history, so they are logged as a short hash (`sess#1a2b3c4d`): lines
of one session still match up, and a log reader cannot resume it. Structured context (session,
turn) is passed as `extra={"ctx": {...}}` and printed as key=value.

Tracebacks are printed only at the debug level; otherwise an error is one line (its type and
message), so a client that can provoke errors cannot flood the log with kilobytes per request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"
# Session keys travel in the WebSocket URL's query, which uvicorn logs as each socket opens.
SECRET_PARAMETER = re.compile(r"((?:client_session_key|api_key|token)=)[^&\s\"']+")
SESSION_ID = re.compile(r"\bsess_[0-9A-Za-z_-]+")


def session_tag(session_id: str) -> str:
    """A session id as logs show it: enough to match lines up, not enough to resume it."""
    digest = hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()[:8]
    return f"sess#{digest}"


class RedactSecrets(logging.Filter):
    """Secrets redacted, session ids hashed; a traceback kept only when `tracebacks` is true."""

    def __init__(self, secrets: Iterable[str], *, tracebacks: bool = True):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)
        self.tracebacks = tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        clean = hide_session_ids(redact(message, self.secrets))
        if record.exc_info and not self.tracebacks:
            error = record.exc_info[1]
            if error is not None:
                summary = f"{type(error).__name__}: {error}"
                clean += f" ({hide_session_ids(redact(summary, self.secrets))[:300]})"
            record.exc_info, record.exc_text = None, None
        if clean != message or record.exc_info:
            record.msg, record.args = clean, None
            if record.exc_info:
                # Render the traceback now, redacted, so the formatter does not print it raw.
                record.exc_text = hide_session_ids(
                    redact(logging.Formatter().formatException(record.exc_info), self.secrets)
                )
                record.exc_info = None
        ctx = getattr(record, "ctx", None)
        if isinstance(ctx, dict) and isinstance(ctx.get("session"), str):
            record.ctx = {**ctx, "session": session_tag(ctx["session"])}
        return True


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced, in any letter case, and secret URL parameters."""
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return SECRET_PARAMETER.sub(rf"\g<1>{REDACTED}", text)


def hide_session_ids(text: str) -> str:
    return SESSION_ID.sub(lambda m: session_tag(m.group(0)), text)


class ContextFormatter(logging.Formatter):
    """`time level logger message key=value ...` with the record's `ctx` appended."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = getattr(record, "ctx", None)
        if ctx:
            line += " " + " ".join(f"{k}={v}" for k, v in ctx.items())
        return line


def configure(level: str, secrets: Iterable[str]) -> None:
    """Install the handler on the root logger, so uvicorn's and httpx's records pass it too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets, tracebacks=level.lower() == "debug"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request URL at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
