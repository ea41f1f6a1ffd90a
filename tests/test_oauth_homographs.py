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


async def test_a_redirect_host_that_is_not_a_hostname_is_refused_at_registration(
    flow: FlowClient,
) -> None:
    """A FULLWIDTH REVERSE SOLIDUS (U+FF3C) in a redirect URI's host passed registration
    (urlsplit's NFKC check looks for / ? # @ : only), and IDNA's nameprep made it an ASCII
    backslash: the consent page said "you will be sent to evil.example\\paypal.com" while the
    303 went to `https://evil.example\\paypal.com/cb?code=...`, which a browser reads as host
    `evil.example`, path `/paypal.com/cb`. A host whose ASCII form is not letters, digits,
    hyphens and dots (or an IP literal) is refused, as the client metadata's redirect_uris."""
    uri = "https://evil.example\uff3cpaypal.com/cb"
    registered = await flow.http.post(
        "/register",
        json={
            "redirect_uris": [uri],
            "client_name": "Payments",
            "grant_types": ["authorization_code", "refresh_token"],
        },
    )
    assert registered.status_code == 400, registered.text
    assert registered.json()["error"] == "invalid_redirect_uri"
    assert "not a hostname" in registered.json()["error_description"]
