// Pages of what the gateway runs: services, tokens (admin), OAuth clients and sessions (admin).

import { api, at, badge, button, el, form, list, say, splitList, table, when } from "./dom.js";

const STATES = { active: "ok", running: "ok", revoked: "bad", expired: "plain", stopped: "warn" };
const state = (value) => badge(value || "—", STATES[value] || "plain");
const counts = (figures) => (figures ? `${figures.active} active / ${figures.total}` : "—");

export async function services(view) {
  const { data } = await api("GET", "/api/v1/services/unified");
  view.replaceChildren(
    el("h1", {}, "Services"),
    el("p", { class: "hint" }, "Docker and external services a route or a proxy can name; `just service-*` and `proxy-client service` change them."),
    table(
      [
        { label: "Name", value: (s) => el("strong", {}, s.service_name) },
        { label: "Type", value: (s) => s.service_type },
        { label: "Target", value: (s) => s.target_url || "—" },
        { label: "Status", value: (s) => state(s.status) },
        { label: "Description", value: (s) => s.description || "" },
      ],
      data,
      { empty: "No services.", key: (s) => s.service_name },
    ),
  );
}

export async function tokens(view) {
  const message = el("p", { class: "message", role: "status", hidden: true });
  const secret = el("div", { class: "secret" });
  const content = el("div", { class: "content" });
  const create = form(
    "token-create",
    [
      { name: "name", label: "Name", required: true, placeholder: "team-a" },
      { name: "cert_email", label: "Certificate email", type: "email" },
      { name: "github_users", label: "GitHub users who sign in as it", placeholder: "alice, bob" },
    ],
    "Create token",
    async (values) => {
      const body = { name: values.name };
      if (values.cert_email) body.cert_email = values.cert_email;
      if (values.github_users) body.github_users = splitList(values.github_users);
      const { data } = await api("POST", "/api/v1/tokens/generate", body);
      secret.replaceChildren(
        el("p", {}, `The secret of ${data.name}, shown this once:`),
        el("code", { class: "token-secret" }, data.token),
      );
      await refresh();
      return `Created ${data.name}.`;
    },
  );
  const remove = async (token) => {
    if (!window.confirm(`Delete the token ${token.name} and every proxy, certificate, route and service it owns?`)) return;
    try {
      await api("DELETE", at("/api/v1/tokens/", token.name));
      say(message, `Deleted ${token.name}.`, "ok");
      await refresh();
    } catch (error) {
      say(message, error.message, "error");
    }
  };
  async function refresh() {
    const { data } = await api("GET", "/api/v1/tokens/");
    content.replaceChildren(
      table(
        [
          { label: "Name", value: (t) => el("strong", {}, t.name) },
          { label: "Role", value: (t) => (t.is_admin ? badge("admin", "info") : badge("owner")) },
          { label: "Certificate email", value: (t) => t.cert_email || "—" },
          { label: "GitHub users", value: (t) => list(t.github_users) },
          { label: "Created", value: (t) => when(t.created_at) },
          { label: "By", value: (t) => t.created_by },
          { label: "", class: "row-actions", value: (t) => (t.is_admin ? null : button("Delete", () => remove(t), "danger")) },
        ],
        data,
        { key: (t) => t.name },
      ),
    );
  }
  view.replaceChildren(
    el("h1", {}, "Tokens"),
    message,
    el("details", { class: "panel" }, el("summary", {}, "New owner token"), create, secret),
    content,
  );
  await refresh();
}

export async function oauth(view) {
  const reload = () => oauth(view);
  const message = el("p", { class: "message", role: "status", hidden: true });
  const [clients, sessions] = await Promise.all([
    api("GET", "/api/v1/oauth/clients"),
    api("GET", "/api/v1/oauth/sessions"),
  ]);
  const revoke = async (session) => {
    if (!window.confirm(`Revoke the session ${session.session_id} of ${session.username}?`)) return;
    try {
      await api("DELETE", at("/api/v1/oauth/sessions/", session.session_id));
      await reload();
    } catch (error) {
      say(message, error.message, "error");
    }
  };
  view.replaceChildren(
    el("h1", {}, "OAuth"),
    message,
    el("h2", {}, "Clients"),
    table(
      [
        { label: "Client", value: (c) => [el("strong", {}, c.client_name || c.client_id), el("div", { class: "hint" }, c.client_id)] },
        { label: "Registered by", value: (c) => c.origin },
        { label: "Redirect URIs", class: "clip", value: (c) => list(c.redirect_uris) },
        { label: "Scope", value: (c) => c.scope },
        { label: "Sessions", value: (c) => counts(c.sessions) },
        { label: "Tokens", value: (c) => counts(c.tokens) },
      ],
      clients.data,
      { empty: "No clients registered.", key: (c) => c.client_id },
    ),
    el("h2", {}, "Sessions"),
    table(
      [
        { label: "User", value: (s) => el("strong", {}, s.username) },
        { label: "Client", value: (s) => s.client_id },
        { label: "Scope", value: (s) => s.scope },
        { label: "Resources", class: "clip", value: (s) => list(s.resources) },
        { label: "Status", value: (s) => state(s.status) },
        { label: "Started", value: (s) => when(s.created_at) },
        { label: "Expires", value: (s) => when(s.expires_at) },
        { label: "", class: "row-actions", value: (s) => (s.status === "active" ? button("Revoke", () => revoke(s), "danger") : null) },
      ],
      sessions.data,
      { empty: "No sessions: nobody has signed in through the OAuth server yet.", key: (s) => s.session_id },
    ),
  );
}
