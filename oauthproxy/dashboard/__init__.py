"""The web dashboard and the API docs pages, served by the admin app from this package alone.

The pages are static: plain HTML, our own CSS and one small ES module (`static/`), which call the
admin REST API with the token the user signed in with (or, signed in with GitHub, a session
acting as one: `github_sign_in.py`). So a page shows exactly what the API lets
that token see: owner scoping is the API's, never the dashboard's. Swagger UI and ReDoc come from
the `openapi-ui-bundles` package, served from here: no page loads anything from another origin.
"""

from oauthproxy.dashboard.github_sign_in import github_sign_in
from oauthproxy.dashboard.pages import dashboard

__all__ = ["dashboard", "github_sign_in"]
