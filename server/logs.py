"""Logging set-up: one line per record, key=value context, and secrets redacted at the source.

Code never logs a secret on purpose; the redaction filter is the belt to those braces, so a
secret that slips into an exception message or a library's log line still never reaches a log.
Structured context (session, turn) is passed as `extra={"ctx": {...}}` and printed as key=value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"
# Session keys travel in the WebSocket URL's query, which uvicorn logs as each socket opens.
SECRET_PARAMETER = re.compile(r"((?:client_session_key|api_key|token)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets)
        if clean != message or record.exc_info:
            record.msg, record.args = clean, None
            if record.exc_info:
                # Render the traceback now, redacted, so the formatter does not print it raw.
                record.exc_text = redact(
                    logging.Formatter().formatException(record.exc_info), self.secrets
                )
                record.exc_info = None
        return True


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return SECRET_PARAMETER.sub(rf"\g<1>{REDACTED}", text)


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
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request URL at INFO; keep it for debugging only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
