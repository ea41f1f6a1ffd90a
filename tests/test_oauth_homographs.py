"""Homographs on the consent and refused pages, over real HTTP: anyone may register a client
(RFC 7591), so its redirect URI may name `p\u0430ypal.example` (a Cyrillic \u0430), which in
Unicode reads as the name it imitates. The pages show hosts in their ASCII (punycode, `xn--`)
form and percent-encode the rest, so what the user approves is where the browser goes."""

from __future__ import annotations

import html

from tests import oauth_helpers
from tests.oauth_helpers import FlowClient, pkce_pair, query_of, refused_link

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow

LOOKALIKE = "p\u0430ypal.example"
"""paypal.example with a Cyrillic a (U+0430) for its first a."""
HOMOGRAPH = f"https://{LOOKALIKE}/c\u00e9llback"
PUNYCODE = "xn--pypal-4ve.example"
AS_SENT = f"https://{PUNYCODE}/c%C3%A9llback"


def assert_ascii_only(page: str) -> None:
    assert PUNYCODE in page
    assert LOOKALIKE not in page and LOOKALIKE not in html.unescape(page)
    assert "c\u00e9llback" not in html.unescape(page)


async def test_the_consent_page_shows_a_homograph_redirect_host_in_punycode(
    flow: FlowClient,
) -> None:
    client = await flow.register(redirect_uris=[HOMOGRAPH], client_name="Payments")
    _verifier, challenge = pkce_pair()
    start = await flow.start(
        client["client_id"], redirect_uri=HOMOGRAPH, code_challenge=challenge, state="s1"
    )
    callback = await flow.through_github(start)
    assert callback.status_code == 302 and callback.headers["location"].startswith("/consent")
    page = await flow.http.get(callback.headers["location"])
    assert page.status_code == 200, page.text
    assert f"<code>{PUNYCODE}</code>" in page.text
    assert_ascii_only(page.text)

    approved = await flow.consent(page)
    assert approved.status_code == 303, approved.text
    location = approved.headers["location"]
    assert location.startswith(AS_SENT + "?")  # where the user was told it goes
    assert query_of(location)["state"] == "s1" and "code" in query_of(location)


async def test_the_refused_page_names_and_links_a_homograph_in_punycode(
    flow: FlowClient,
) -> None:
    client = await flow.register(redirect_uris=[HOMOGRAPH], client_name="Payments")
    response = await flow.http.get(
        "/authorize",
        params={"client_id": client["client_id"], "response_type": "token", "state": "x"},
    )
    link = refused_link(response)
    assert_ascii_only(response.text)
    assert f"Continue to {PUNYCODE}" in response.text
    assert link.startswith(AS_SENT + "?")
    assert query_of(link)["error"] == "unsupported_response_type"
