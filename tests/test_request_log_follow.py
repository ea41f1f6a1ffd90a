"""`/api/v1/logs/follow` long polls on the wire: a token holds at most FOLLOWS_PER_TOKEN at once
(the next is 429, naming the limit), another token is not counted against it, and a slot is free
again once a poll answers."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import trio

from oauthproxy.api.logs import FOLLOWS_PER_TOKEN
from oauthproxy.serve import Ready
from tests.backend import serve_backend
from tests.eventually import eventually

FOLLOW = "/api/v1/logs/follow"
HOST = "follow-limit.example.com"


async def test_a_token_holds_a_bounded_number_of_follows(
    gateway: Ready, api: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    port: int = await nursery.start(functools.partial(serve_backend, "one"))
    secret = (await api.post("/api/v1/tokens/generate", json={"name": "tail"})).json()["token"]
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx.AsyncClient(base_url=gateway.api_url, headers=headers, timeout=60) as owner,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as public,
    ):
        target = {"hostname": HOST, "target_url": f"http://127.0.0.1:{port}"}
        created = await owner.post("/api/v1/proxy/targets/", json=target)
        assert created.status_code == 201, created.text
        start = await _after_a_marker(owner, public)
        answers: list[dict[str, Any]] = []

        async def poll() -> None:
            """One long poll (again when a probe below held the last slot as it arrived)."""
            while True:
                answer = await owner.get(FOLLOW, params={"after": start, "wait": 25})
                if answer.status_code != 429:
                    assert answer.status_code == 200, answer.text
                    answers.append(answer.json())
                    return

        async def refused() -> httpx.Response | None:
            answer = await owner.get(FOLLOW, params={"after": start, "wait": 0})
            return answer if answer.status_code == 429 else None

        async with trio.open_nursery() as polls:
            for _poll in range(FOLLOWS_PER_TOKEN):
                polls.start_soon(poll)
            body = (await eventually(refused, what="one follow more refused")).json()
            assert body["error"] == "too_many_follows" and body["field"] == "after"
            assert f"at most {FOLLOWS_PER_TOKEN} at once" in body["detail"]
            others = await api.get(FOLLOW, params={"after": start, "wait": 0})
            assert others.status_code == 200, others.text  # the admin's token is another
            assert answers == []  # the polls are still waiting
            await public.get("/echo/ends-the-polls", headers={"Host": HOST})
        assert len(answers) == FOLLOWS_PER_TOKEN
        for answer in answers:
            assert [entry["request_path"] for entry in answer["logs"]] == ["/echo/ends-the-polls"]
        again = await owner.get(FOLLOW, params={"after": start, "wait": 0})
        assert again.status_code == 200, again.text


async def _after_a_marker(owner: httpx.AsyncClient, public: httpx.AsyncClient) -> str:
    """The stream's last id once the owner's hostname is served and every request made to it
    so far is logged (a marker request logged means every earlier one is)."""

    async def known() -> bool:
        return (await public.get("/echo/probe", headers={"Host": HOST})).status_code != 404

    await eventually(known, what=f"{HOST} served")
    await public.get("/echo/marker", headers={"Host": HOST})

    async def logged() -> str | None:
        answer = (await owner.get("/api/v1/logs/search", params={"q": "marker"})).json()
        if not answer["logs"]:
            return None
        return str((await owner.get(FOLLOW, params={"limit": 1})).json()["last"])

    return await eventually(logged, what="the marker request logged")
