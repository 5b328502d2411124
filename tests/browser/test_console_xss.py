"""Uploaded HTML cannot drive a signed-in console (docs/operations.md 1.1): an object's script never runs,
whether opened on /s3 (the console's own origin) or on `s3.listen`; and a page that does run script on
`s3.listen`'s origin (same site, another port), even holding the session's CSRF token, is refused by the
console's Origin check and cannot read a console page."""

from __future__ import annotations

import json
import uuid
from typing import Any

from conftest import Coordinator, bucket_exists

from .conftest import sign_in

# what an attacker's object tries: read a console page for its CSRF token, then create a bucket as the admin
EVIL = """<!doctype html><html><head><title>object</title></head><body><script>
document.title = "ran";
(async () => {{
  let token = {token};
  try {{
    const page = await (await fetch("{console}/", {{credentials: "include"}})).text();
    token = (page.match(/name="csrf" value="([^"]+)"/) || [])[1] || token;
  }} catch (e) {{ token = token || "unreadable"; }}
  let sent = "blocked";
  try {{
    await fetch("{console}/buckets", {{
      method: "POST", credentials: "include", mode: "no-cors",
      headers: {{"content-type": "application/x-www-form-urlencoded"}},
      body: "name={victim}&csrf=" + encodeURIComponent(token),
    }});
    sent = "sent";
  }} catch (e) {{}}
  document.title = "done " + sent;
}})();
</script></body></html>"""


def _evil(console: str, victim: str, token: str = "") -> str:
    return EVIL.format(console=console, victim=victim, token=json.dumps(token))


def test_an_uploaded_html_object_never_runs_as_the_console(page: Any, console_coord: Coordinator) -> None:
    c = console_coord
    console = f"http://127.0.0.1:{c.port}/console"
    s3 = c.client()
    bucket = f"xss-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    sign_in(page, c.token)
    for listener, endpoint in (("/s3", c.endpoint), ("s3.listen", c.root_endpoint)):
        victim = f"pwned-{uuid.uuid4().hex[:8]}"
        key = f"evil-{uuid.uuid4().hex[:6]}.html"
        s3.put_object(Bucket=bucket, Key=key, Body=_evil(console, victim).encode(), ContentType="text/html")
        signer = c.client(endpoint=endpoint)
        for params in ({}, {"ResponseContentType": "text/html"}):
            url = signer.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key, **params}, ExpiresIn=300
            )
            response = page.goto(url)
            assert response.status == 200, (listener, response.status)
            # the script's first statement is synchronous: had it run, the title would say so by now
            assert page.title() == "object", (listener, params, page.title())
            assert response.headers.get("content-security-policy") == "sandbox", listener
            assert response.headers.get("x-content-type-options") == "nosniff", listener
        assert not bucket_exists(s3, victim), listener


def test_script_on_the_s3_listeners_origin_is_refused_by_the_origin_check(
    browser: Any, console_coord: Coordinator
) -> None:
    """The layer behind the sandbox: a page that does run script on `s3.listen`'s origin. The context bypasses
    CSP, so the object's sandbox is off and its script runs there, with the session's real CSRF token."""
    c = console_coord
    console = f"http://127.0.0.1:{c.port}/console"
    context = browser.new_context(base_url=f"http://127.0.0.1:{c.port}", bypass_csp=True)
    try:
        page = context.new_page()
        sign_in(page, c.token)
        token = page.locator("input[name=csrf]").first.input_value()
        victim = f"pwned-{uuid.uuid4().hex[:8]}"
        s3 = c.client()
        bucket = f"xss-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.html", Body=_evil(console, victim, token).encode(), ContentType="text/html")
        url = c.client(endpoint=c.root_endpoint).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "a.html"}, ExpiresIn=300
        )
        page.goto(url)
        page.wait_for_function("document.title.startsWith('done')")
        # it did run, and its POST went out with the session cookie (same site): the console refused it
        assert page.title() == "done sent"
        assert not bucket_exists(s3, victim)
        c.wait_for_log(r"console POST '/buckets' refused: foreign Origin")
    finally:
        context.close()
