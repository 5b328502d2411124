"""Every S3 error code carries its default message, so a raiser with nothing more to say names only the code."""

from __future__ import annotations

import pytest

from tunnelmesh.s3 import xml
from tunnelmesh.s3.errors import MESSAGE, STATUS, S3Error


def test_every_code_with_a_status_has_a_default_message_and_no_other_code_has_one() -> None:
    assert "NoSuchKey" in STATUS  # the table is the real one, not empty
    assert sorted(MESSAGE) == sorted(STATUS)
    assert [code for code, text in MESSAGE.items() if not text.strip() or text == code] == []


@pytest.mark.parametrize("code", sorted(STATUS))
def test_an_error_built_from_its_code_alone_renders_the_default_message(code: str) -> None:
    err = S3Error(code)
    assert (err.code, err.status, err.message, str(err)) == (code, STATUS[code], MESSAGE[code], MESSAGE[code])
    doc = xml.error_document(err.code, err.message, "/b/k", "req1", err.fields).decode()
    assert f"<Code>{code}</Code><Message>{xml.e(MESSAGE[code])}</Message>" in doc


# the wire text S3 sends, written out here so a changed table entry is caught, not copied
@pytest.mark.parametrize(
    "code, text",
    [
        ("NoSuchKey", "The specified key does not exist."),
        ("NoSuchBucket", "The specified bucket does not exist"),
        ("AccessDenied", "Access Denied"),
        (
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        ),
        ("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"),
        ("InvalidRange", "The requested range is not satisfiable"),
    ],
)
def test_the_default_messages_are_the_ones_s3_sends(code: str, text: str) -> None:
    assert S3Error(code).message == text


def test_a_specific_message_and_fields_still_win_over_the_default() -> None:
    err = S3Error("NoSuchKey", "No key k in bucket b.", Key="k")
    assert (err.message, err.fields, err.status) == ("No key k in bucket b.", {"Key": "k"}, 404)


def test_a_code_without_a_default_says_its_own_name() -> None:
    err = S3Error("SomethingElse", status=418)
    assert (err.message, err.status) == ("SomethingElse", 418)
