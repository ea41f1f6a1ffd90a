"""A GitHub-shaped OAuth server for tests: quart-trio on hypercorn, on a free loopback port.

`/login/oauth/authorize` approves at once for `standin.user` and redirects back with a code;
`/login/oauth/access_token` exchanges it (checking client id, secret and redirect URI); `/user`,
`/user/emails`, `/user/orgs`, `/user/teams` describe the user the token was issued for. The lists
come in pages as GitHub's do: `per_page` (default 30, at most `max_per_page`) and `page`, with a
`Link` header naming the `next`, `last`, `first` and `prev` pages.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, jsonify, request
from quart_trio import QuartTrio


@dataclass
class GitHubUser:
    id: int
    login: str
    emails: list[str] = field(default_factory=list)
    """Verified emails; the first is the primary one."""
    unverified_emails: list[str] = field(default_factory=list)
    orgs: list[str] = field(default_factory=list)
    teams: list[tuple[str, str]] = field(default_factory=list)
    """(organisation, team slug)"""

    def profile(self) -> dict[str, Any]:
        return {"id": self.id, "login": self.login, "email": None, "name": self.login.title()}

    def email_list(self) -> list[dict[str, Any]]:
        verified = [
            {"email": email, "verified": True, "primary": index == 0}
            for index, email in enumerate(self.emails)
        ]
        unverified = [
            {"email": email, "verified": False, "primary": False}
            for email in self.unverified_emails
        ]
        return verified + unverified


@dataclass
class GitHubStandIn:
    user: GitHubUser = field(
        default_factory=lambda: GitHubUser(1001, "alice", ["alice@example.com"])
    )
    client_id: str = "standin-client-id"
    client_secret: str = "standin-client-secret"
    url: str = ""
    logins: int = 0
    max_per_page: int = 100
    """GitHub's cap on `per_page`."""
    link_base: str | None = None
    """Where the `Link` header's pages point (default: `url`)."""
    pages_served: list[str] = field(default_factory=list)
    """`/user/orgs?page=2`, …: every list page asked for, in order."""
    _codes: dict[str, tuple[GitHubUser, str]] = field(default_factory=dict)
    _tokens: dict[str, GitHubUser] = field(default_factory=dict)

    def authorize(self, args: dict[str, str]) -> Response:
        if args.get("client_id") != self.client_id or not args.get("redirect_uri"):
            return Response("unknown client", 400)
        code = secrets.token_hex(10)
        self._codes[code] = (self.user, args["redirect_uri"])
        self.logins += 1
        query = urlencode({"code": code, "state": args.get("state", "")})
        return Response("", 302, {"Location": f"{args['redirect_uri']}?{query}"})

    def exchange(self, form: dict[str, str]) -> dict[str, str]:
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return {"error": "incorrect_client_credentials"}
        found = self._codes.pop(form.get("code", ""), None)
        if found is None or found[1] != form.get("redirect_uri"):
            return {"error": "bad_verification_code"}
        token = "gho_" + secrets.token_hex(16)
        self._tokens[token] = found[0]
        return {"access_token": token, "token_type": "bearer", "scope": "read:user"}

    def user_of(self, authorization: str) -> GitHubUser | None:
        return self._tokens.get(authorization.removeprefix("Bearer ").strip())

    def page(self, path: str, items: list[Any], args: dict[str, str]) -> Response:
        """One page of a list, with GitHub's `Link` header (when there is more than one)."""
        per_page = min(_number(args.get("per_page"), 30), self.max_per_page)
        number = _number(args.get("page"), 1)
        self.pages_served.append(f"{path}?page={number}")
        last = max(1, -(-len(items) // per_page))
        response = jsonify(items[(number - 1) * per_page : number * per_page])
        links = {"next": number + 1, "last": last} if number < last else {}
        if number > 1:
            links.update(first=1, prev=number - 1)
        base = f"{self.link_base or self.url}{path}"
        if links:
            response.headers["Link"] = ", ".join(
                f'<{base}?{urlencode({"per_page": per_page, "page": page})}>; rel="{rel}"'
                for rel, page in links.items()
            )
        return response


def _number(value: str | None, default: int) -> int:
    return int(value) if value and value.isdigit() and int(value) > 0 else default


def create_app(standin: GitHubStandIn) -> QuartTrio:
    app = QuartTrio("github-standin")

    @app.get("/login/oauth/authorize")
    async def authorize() -> Response:
        return standin.authorize(dict(request.args))

    @app.post("/login/oauth/access_token")
    async def access_token() -> Response:
        return jsonify(standin.exchange(dict(await request.form)))

    @app.get("/user")
    @app.get("/user/<what>")
    async def describe(what: str = "user") -> Response:
        user = standin.user_of(request.headers.get("Authorization", ""))
        if user is None:
            return Response('{"message": "Bad credentials"}', 401)
        if what == "user":
            return jsonify(user.profile())
        lists: dict[str, list[Any]] = {
            "emails": user.email_list(),
            "orgs": [{"login": org} for org in user.orgs],
            "teams": [{"slug": slug, "organization": {"login": org}} for org, slug in user.teams],
        }
        if what not in lists:
            return Response('{"message": "Not Found"}', 404)
        return standin.page(request.path, lists[what], dict(request.args))

    return app


async def serve_github_standin(
    standin: GitHubStandIn, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the stand-in on a free loopback port; started with its base URL."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(serve, create_app(standin), config)
        )
        standin.url = binds[0]
        task_status.started(standin.url)
