"""The log's two formats: `key=value` text for people, one JSON object per line for collectors.

A record logged with `extra={"access": {...}}` (the S3 and admin request lines) is rendered field by field;
any other record is its message. Field values come from clients (keys, user agents, policy Sids), so a
value is never written raw: in text it is quoted and escaped unless it is a plain token, in JSON the
encoder escapes it, and either way a key holding a newline or a terminal escape cannot end the line
early, forge a second one, or repaint an operator's terminal.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")

# printable ASCII less space, `"` and `\`: what a bare (unquoted) value may be made of
_BARE = re.compile(r"[!#-\[\]-~]+")
# the same plus space: quoted as it is (a user agent, a key with spaces), with nothing to escape
_PLAIN = re.compile(r"[ !#-\[\]-~]*")
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _escape_char(ch: str) -> str:
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    if ch.isprintable():
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# what a quoted value escapes without a look at the character's Unicode class: C0 controls, DEL, C1 controls
_QUOTE_TABLE = {i: _escape_char(chr(i)) for i in [*range(0x20), 0x22, 0x5C, *range(0x7F, 0xA0)]}


def escape(value: object) -> str:
    """A field value as `key=value` text shows it: bare when it is a plain token (`200`, `PutObject`,
    `12.5`, `a/b.txt`), otherwise in double quotes with `\\`, `"`, control and other unprintable characters
    (line and paragraph separators, bidi overrides) escaped. The empty string is `""`, None is `-`."""
    # every request line goes through here, field by field: exact type checks and C-speed string calls only
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int or kind is float:
        return str(value)
    elif value is None:
        return "-"
    else:
        text = str(value)
    assert isinstance(text, str)
    if _BARE.fullmatch(text):
        return text
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    quoted = text.translate(_QUOTE_TABLE)
    if not quoted.isprintable():  # a non-ASCII unprintable (U+2028, a bidi override) is left: the slow way
        quoted = "".join([_escape_char(ch) for ch in text])
    return f'"{quoted}"'


def render_fields(fields: dict[str, Any]) -> str:
    # the common cases inline (a number, a plain token): the same text escape() gives, without a call per field
    parts = []
    for name, value in fields.items():
        kind = type(value)
        if kind is int or kind is float or (kind is str and _BARE.fullmatch(value)):
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}={escape(value)}")
    return " ".join(parts)


def _fold(text: str) -> str:
    """A free-text message (or traceback) kept readable but unable to pass for another record: unprintable
    characters escaped, and every line after the first indented, so only a record's own first line starts
    at the margin (with its timestamp)."""
    if text.isprintable():
        return text
    lines = [
        "".join([ch if ch.isprintable() or ch == "\t" else _escape_char(ch) for ch in line])
        for line in text.split("\n")
    ]
    return "\n    ".join(lines)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message>`; a request line's message is its fields as `key=value`."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # logging's own text, its date part formatted once a second (strftime took a few us of every request line)
        if datefmt is not None or self.default_msec_format is None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        record.message = render_fields(access) if isinstance(access, dict) else _fold(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        extra = _exception_text(self, record)
        return f"{text}\n    {_fold(extra)}" if extra else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `ts` (UTC, ISO 8601, milliseconds), `level`, `logger`, `msg`, then a request
    line's fields at the top level, and `exc` with a traceback. ASCII only: nothing a terminal or a line
    splitter could take for a line end."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            doc.update(access)
        extra = _exception_text(self, record)
        if extra:
            doc["exc"] = extra
        return _JSON.encode(doc)


# json.dumps(doc, default=str) builds an encoder per call; one, as configured, serves every line
_JSON = json.JSONEncoder(default=str)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    parts = [p for p in (record.exc_text, record.stack_info and formatter.formatStack(record.stack_info)) if p]
    return "\n".join(parts)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"log format {fmt!r}: expected {' or '.join(FORMATS)}")


def configure_logging(level: str, fmt: str = "text") -> None:
    """The process's one handler, on stderr, in `fmt`. Forked workers and jobs inherit it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # neither format shows where a line was logged from, nor the thread or process: the logging HOWTO's
    # "Optimization" switches, which spare every record (one per request) a walk up the stack and three lookups
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # the form parser warns about each malformed form before raising; the request's own log line
    # (400 MalformedPOSTRequest) says it once, and anyone may send such forms to flood the log
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
