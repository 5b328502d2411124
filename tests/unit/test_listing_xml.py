"""A listing page's XML pieces, written a page at a time (s3/xml.py, s3/ops/listing.py), against the one-value
writers they stand for: the same bytes for every value."""

from __future__ import annotations

import random
import time
from urllib.parse import quote_plus

from tunnelmesh.s3 import xml
from tunnelmesh.s3.ops import listing

# what a key may hold that a writer must change: markup, XML-illegal characters, a lone surrogate, spaces and
# plus signs (URL encoding), multi-byte characters
ODD = ["a&b", "<k>", "x>y", "tab\tnl\n", "nul\x00", "bell\x07", "sur\ud800", "\ufffe", "a b", "a+b", "é/😀", "~._-/"]


def _iso_reference(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def test_iso8601_writes_what_strftime_does() -> None:
    rnd = random.Random(17)
    times = [0.0, 1e-9, 0.9995, 1.9999999, 59.999, 86399.9999, 86400.0, 951782400.5, 4102444800.25]
    times += [253402300799.999, 253402300800.0, 1e12, -0.5, -86400.25]  # past year 9999, before the epoch
    times += [rnd.uniform(0, 4e9) for _ in range(5000)]
    assert [xml.iso8601(t) for t in times] == [_iso_reference(t) for t in times]


def test_a_page_of_texts_is_escaped_as_each_value_would_be() -> None:
    plain = [f"dir/{i:05d}.txt" for i in range(50)]
    assert listing.texts(plain, listing._as_is) is plain  # nothing to do: the list itself
    for odd in ODD:
        page = [*plain[:3], odd, *plain[3:6]]
        assert listing.texts(page, listing._as_is) == [xml.e(v) for v in page], odd


def test_a_page_of_url_encoded_texts_is_what_quote_plus_gives() -> None:
    plain = [f"dir/{i:05d}-a_b.~" for i in range(50)]
    assert listing.texts(plain, listing._url) == plain
    for odd in ODD:
        if "\ud800" in odd:
            continue  # no key holds a lone surrogate (it has no UTF-8), and quote_plus refuses one
        page = [*plain[:3], odd, *plain[3:6]]
        expected = [xml.e(quote_plus(v, safe="/")) for v in page]
        assert listing.texts(page, listing._url) == expected, odd
