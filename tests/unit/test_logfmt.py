"""The log formats (obs/logfmt.py): what a client-chosen value becomes in a line, and the JSON shape."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from tunnelmesh.config import ConfigError, load
from tunnelmesh.obs.logfmt import JsonFormatter, TextFormatter, escape, formatter

ESCAPES = [
    ("PutObject", "PutObject"),
    ("a/b.txt", "a/b.txt"),
    (200, "200"),
    (12.5, "12.5"),
    (None, "-"),
    ("", '""'),
    ("with space", '"with space"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("line\nforged=1", '"line\\nforged=1"'),
    ("cr\rlf", '"cr\\rlf"'),
    ("tab\there", '"tab\\there"'),
    ("\x1b[31mred", '"\\x1b[31mred"'),
    ("nul\x00", '"nul\\x00"'),
    ("del\x7f", '"del\\x7f"'),
    ("nel\x85", '"nel\\x85"'),
    ("ls\u2028ps\u2029", '"ls\\u2028ps\\u2029"'),
    ("bidi\u202e", '"bidi\\u202e"'),
    ("café", '"café"'),  # printable non-ASCII stays readable, only quoted
]


@pytest.mark.parametrize(("value", "shown"), ESCAPES)
def test_escape(value: object, shown: str) -> None:
    assert escape(value) == shown


@pytest.mark.parametrize("value", [v for v, _ in ESCAPES if isinstance(v, str)])
def test_escaped_value_is_one_printable_token(value: str) -> None:
    shown = escape(value)
    assert shown.isprintable() and "\n" not in shown
    if " " in shown or shown.startswith('"'):
        assert shown.startswith('"') and shown.endswith('"') and '"' not in shown[1:-1].replace('\\"', "")


def _record(msg: str, access: dict[str, object] | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nid=forged")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("tunnelmesh.s3", logging.INFO, __file__, 1, msg, (), exc_info)
    if access is not None:
        record.access = access
    return record


FIELDS = {"id": "ABC", "peer": "p1", "op": "GetObject", "status": 200, "key": "a\nid=X op=Forged status=200", "ms": 1.5}


def test_text_access_line() -> None:
    line = TextFormatter().format(_record("access", FIELDS))
    assert "\n" not in line
    assert line.endswith(
        ' INFO tunnelmesh.s3 id=ABC peer=p1 op=GetObject status=200 key="a\\nid=X op=Forged status=200" ms=1.5'
    )


def test_text_free_message_cannot_forge_a_record() -> None:
    line = TextFormatter().format(_record("cut off: /s3/b/k\n2026-01-01 00:00:00,000 INFO x \x1b[2Jforged"))
    first, *rest = line.split("\n")
    assert first.endswith("cut off: /s3/b/k")
    assert rest == ["    2026-01-01 00:00:00,000 INFO x \\x1b[2Jforged"]


def test_text_traceback_indented() -> None:
    lines = TextFormatter().format(_record("failed", exc=True)).split("\n")
    assert lines[0].endswith(" INFO tunnelmesh.s3 failed")
    assert all(line.startswith("    ") for line in lines[1:]) and any("ValueError: boom" in x for x in lines)


def test_json_shape() -> None:
    line = JsonFormatter().format(_record("access", FIELDS))
    assert "\n" not in line and line.isascii()
    doc = json.loads(line)
    assert set(doc) == {"ts", "level", "logger", "msg", *FIELDS}
    assert (doc["level"], doc["logger"], doc["msg"]) == ("INFO", "tunnelmesh.s3", "access")
    assert doc["key"] == FIELDS["key"] and doc["status"] == 200 and doc["ms"] == 1.5
    assert doc["ts"].endswith("+00:00") and "T" in doc["ts"]


def test_json_plain_message_and_traceback() -> None:
    doc = json.loads(JsonFormatter().format(_record("started \x1b x", exc=True)))
    assert doc["msg"] == "started \x1b x"
    assert "ValueError: boom\nid=forged" in doc["exc"]
    assert "access" not in doc


def test_unknown_format_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        formatter("xml")


def test_log_format_setting(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.yaml"
    assert load(None).log_format == "text"
    path.write_text("log_format: JSON\n")
    assert load(path).log_format == "json"
    path.write_text("log_format: xml\n")
    with pytest.raises(ConfigError) as e:
        load(path)
    assert str(e.value) == "log_format: expected text or json, got 'xml'"


@pytest.mark.parametrize("created", [1700000000.0, 1700000000.9995, 1700000001.0004, 1700000059.25, 1700003600.5])
def test_text_time_is_loggings_own(created: float) -> None:
    """The date part is formatted once a second and reused: each line still shows what logging.Formatter shows."""
    ours, plain = TextFormatter(), logging.Formatter("%(asctime)s")
    for t in (created, created + 0.0001, created - 1, created):  # back and forth over a second boundary
        record = _record("x")
        record.created, record.msecs = t, int((t - int(t)) * 1000) + 0.0
        assert ours.formatTime(record) == plain.formatTime(record)
        assert ours.format(record).startswith(plain.formatTime(record) + " INFO tunnelmesh.s3 x")


def test_text_fields_as_escape_shows_each() -> None:
    """An access line's fields, inline fast path or not, are exactly escape() of each value."""
    fields = {f"f{i}": value for i, (value, _) in enumerate(ESCAPES)} | {"flag": True, "big": 10**20, "neg": -0.5}
    line = TextFormatter().format(_record("access", fields))
    assert line.split(" INFO tunnelmesh.s3 ", 1)[1] == " ".join(f"{k}={escape(v)}" for k, v in fields.items())
