// Pages for the records a token owns: proxies, certificates, routes.
// Each page is `async (view, context)`: it fills `view` once, then `refresh()` reloads its table
// after every change (the forms and their messages stay).

import { api, at, badge, button, el, form, list, say, splitList, table, when } from "./dom.js";

const PROXIES = "/api/v1/proxy/targets/";
const CERTIFICATES = "/api/v1/certificates/";
const ROUTES = "/api/v1/routes/";

/** The page's frame: a title, a message line, optional panels, then the content. */
function frame(view, title, ...panels) {
  const message = el("p", { class: "message", role: "status", hidden: true });
  const editor = el("div", { class: "editor" });
  const content = el("div", { class: "content" }, el("p", { class: "empty" }, "Loading…"));
  view.replaceChildren(el("h1", {}, title), message, ...panels, editor, content);
  return { message, editor, content };
}

function panel(summary, body) {
  return el("details", { class: "panel" }, el("summary", {}, summary), body);
}

async function confirmed(question, message, action, refresh) {
  if (!window.confirm(question)) return;
  try {
    say(message, await action(), "ok");
    await refresh();
  } catch (error) {
    say(message, error.message, "error");
  }
}

const onOff = (on) => badge(on ? "on" : "off", on ? "ok" : "plain");

// --- proxies -----------------------------------------------------------------------------------

export async function proxies(view) {
  const create = form(
    "proxy-create",
    [
      { name: "hostname", label: "Hostname", required: true, placeholder: "app.example.com" },
      { name: "target_url", label: "Backend URL", required: true, placeholder: "http://127.0.0.1:3000" },
      { name: "enable_https", label: "HTTPS (orders a certificate)", type: "checkbox" },
      { name: "cert_email", label: "Certificate email (for HTTPS)", type: "email" },
    ],
    "Create proxy",
    async (values) => {
      const body = { hostname: values.hostname, target_url: values.target_url, enable_https: values.enable_https };
      if (values.cert_email) body.cert_email = values.cert_email;
      const { headers } = await api("POST", PROXIES, body);
      await refresh();
      const action = headers.get("X-Certificate-Action");
      const detail = headers.get("X-Certificate-Detail");
      return `Created ${values.hostname}.` + (action ? ` HTTPS: ${action}${detail ? ` (${detail})` : ""}.` : "");
    },
  );
  const { message, editor, content } = frame(view, "Proxies", panel("New proxy", create));
  const edit = (proxy) => editor.replaceChildren(proxyEditor(proxy, editor, refresh));
  const remove = (proxy) =>
    confirmed(`Delete the proxy ${proxy.hostname}?`, message, async () => {
      await api("DELETE", at(PROXIES, proxy.hostname));
      return `Deleted ${proxy.hostname}.`;
    }, refresh);
  async function refresh() {
    const { data } = await api("GET", PROXIES);
    content.replaceChildren(
      table(
        [
          { label: "Hostname", value: (p) => el("strong", {}, p.hostname) },
          { label: "Backend", value: (p) => p.target_url },
          { label: "HTTP", value: (p) => onOff(p.enable_http) },
          { label: "HTTPS", value: httpsState },
          { label: "Auth", value: authState },
          { label: "State", value: (p) => (p.enabled ? badge("enabled", "ok") : badge("disabled", "warn")) },
          { label: "", class: "row-actions", value: (p) => [button("Edit", () => edit(p)), button("Delete", () => remove(p), "danger")] },
        ],
        data,
        { empty: "No proxies yet: create one above.", key: (p) => p.hostname },
      ),
    );
  }
  await refresh();
}

function httpsState(proxy) {
  if (!proxy.enable_https) return badge("off");
  return [
    badge("on", "ok"),
    proxy.cert_name ? ` ${proxy.cert_name}` : " no certificate yet",
    proxy.https_redirect ? el("div", { class: "hint" }, "HTTP redirects to HTTPS") : null,
  ];
}

function authState(proxy) {
  if (!proxy.auth_enabled) return badge("off");
  const who = list([...(proxy.auth_required_users || []), ...(proxy.auth_required_groups || [])]);
  return [badge(proxy.auth_mode, "info"), el("div", { class: "hint" }, who === "—" ? "default users" : who)];
}

function proxyEditor(proxy, editor, refresh) {
  const fields = [
    { name: "target_url", label: "Backend URL", value: proxy.target_url, required: true },
    { name: "cert_name", label: "Certificate name", value: proxy.cert_name || "" },
    { name: "enabled", label: "Enabled", type: "checkbox", value: proxy.enabled },
    { name: "enable_http", label: "HTTP", type: "checkbox", value: proxy.enable_http },
    { name: "enable_https", label: "HTTPS", type: "checkbox", value: proxy.enable_https },
    { name: "https_redirect", label: "Redirect HTTP to HTTPS", type: "checkbox", value: proxy.https_redirect },
    { name: "preserve_host_header", label: "Keep the Host header", type: "checkbox", value: proxy.preserve_host_header },
  ];
  const node = form("proxy-edit", fields, "Save", async (values) => {
    const body = { ...values, cert_name: values.cert_name || null };
    await api("PUT", at(PROXIES, proxy.hostname), body);
    await refresh();
    return `Saved ${proxy.hostname}.`;
  });
  node.querySelector(".actions").append(button("Cancel", () => editor.replaceChildren(), "quiet"));
  return el("section", { class: "card" }, el("h2", {}, `Edit ${proxy.hostname}`), node);
}

// --- certificates ------------------------------------------------------------------------------

const CERT_STATES = { active: "ok", pending: "warn", issuing: "warn", renewing: "warn", failed: "bad", expired: "bad" };

export async function certificates(view) {
  const create = form(
    "certificate-create",
    [
      { name: "cert_name", label: "Name", required: true, placeholder: "app-cert" },
      { name: "domains", label: "Domains (comma-separated)", required: true, placeholder: "app.example.com" },
      { name: "kind", label: "Kind", type: "select", options: ["ACME (Let's Encrypt or ACME_DIRECTORY_URL)", "self-signed"] },
      { name: "email", label: "ACME account email", type: "email" },
    ],
    "Create certificate",
    async (values) => {
      const domains = splitList(values.domains);
      if (values.kind === "self-signed") {
        await api("POST", `${CERTIFICATES}self-signed`, { cert_name: values.cert_name, domains });
      } else {
        const body = { cert_name: values.cert_name, domains };
        if (values.email) body.email = values.email;
        await api("POST", `${CERTIFICATES}multi-domain`, body);
      }
      await refresh();
      return `Created ${values.cert_name}; its status is in the table.`;
    },
  );
  const { message, content } = frame(view, "Certificates", panel("New certificate", create));
  const renew = (cert) =>
    confirmed(`Renew ${cert.cert_name} now?`, message, async () => {
      await api("POST", at(CERTIFICATES, cert.cert_name, "renew"));
      return `Renewal of ${cert.cert_name} started.`;
    }, refresh);
  const remove = (cert) =>
    confirmed(`Delete the certificate ${cert.cert_name}?`, message, async () => {
      await api("DELETE", at(CERTIFICATES, cert.cert_name));
      return `Deleted ${cert.cert_name}.`;
    }, refresh);
  async function refresh() {
    const { data } = await api("GET", CERTIFICATES);
    content.replaceChildren(
      table(
        [
          { label: "Name", value: (c) => el("strong", {}, c.cert_name) },
          { label: "Domains", value: (c) => list(c.domains) },
          { label: "Status", value: (c) => badge(c.status, CERT_STATES[c.status] || "plain") },
          { label: "Expires", value: expiry },
          { label: "Issuer", value: (c) => (c.self_signed ? "self-signed" : c.acme_directory_url || "ACME") },
          { label: "Last error", class: "clip", value: lastError },
          { label: "", class: "row-actions", value: (c) => [button("Renew", () => renew(c)), button("Delete", () => remove(c), "danger")] },
        ],
        data,
        { empty: "No certificates yet.", key: (c) => c.cert_name },
      ),
    );
  }
  await refresh();
}

function expiry(cert) {
  if (!cert.expires_at) return "—";
  const days = Math.floor((new Date(cert.expires_at) - Date.now()) / 86400000);
  const kind = days < 0 ? "bad" : days < 14 ? "warn" : "plain";
  return [when(cert.expires_at), el("div", { class: `hint ${kind}` }, days < 0 ? "expired" : `in ${days} days`)];
}

function lastError(cert) {
  if (!cert.last_error) return "—";
  const next = cert.next_attempt_at ? `; next attempt ${when(cert.next_attempt_at)}` : "";
  return el("span", { title: cert.last_error }, `${cert.last_error.slice(0, 120)}${next} (${cert.failures} failures)`);
}

// --- routes ------------------------------------------------------------------------------------

const TARGET_TYPES = ["hostname", "service", "port", "url"];

function routeFields(route = {}) {
  return [
    { name: "path_pattern", label: "Path", value: route.path_pattern, required: true, placeholder: "/api/" },
    { name: "target_type", label: "Target type", type: "select", options: TARGET_TYPES, value: route.target_type },
    { name: "target_value", label: "Target", value: route.target_value, required: true, placeholder: "app.example.com" },
    { name: "priority", label: "Priority", type: "number", value: route.priority ?? 50 },
    { name: "methods", label: "Methods (comma-separated, empty: all)", value: list(route.methods).replace("—", "") },
    { name: "proxy_hostnames", label: "Only for these proxies (comma-separated, empty: all)", value: list(route.proxy_hostnames).replace("—", "") },
    { name: "description", label: "Description", value: route.description },
    { name: "is_regex", label: "Path is a regular expression", type: "checkbox", value: route.is_regex },
    { name: "enabled", label: "Enabled", type: "checkbox", value: route.enabled ?? true },
  ];
}

function routeBody(values) {
  const methods = splitList(values.methods).map((m) => m.toUpperCase());
  const hostnames = splitList(values.proxy_hostnames);
  return {
    path_pattern: values.path_pattern,
    target_type: values.target_type,
    target_value: values.target_value,
    priority: Number(values.priority || 50),
    methods: methods.length ? methods : null,
    scope: hostnames.length ? "proxy" : "global",
    proxy_hostnames: hostnames,
    description: values.description,
    is_regex: values.is_regex,
    enabled: values.enabled,
  };
}

export async function routes(view) {
  const create = form("route-create", routeFields(), "Create route", async (values) => {
    const { data } = await api("POST", ROUTES, routeBody(values));
    await refresh();
    return `Created route ${data.route_id}.`;
  });
  const { message, editor, content } = frame(view, "Routes", panel("New route", create));
  const edit = (route) => {
    const node = form("route-edit", routeFields(route), "Save", async (values) => {
      await api("PUT", at(ROUTES, route.route_id), routeBody(values));
      await refresh();
      return `Saved route ${route.route_id}.`;
    });
    node.querySelector(".actions").append(button("Cancel", () => editor.replaceChildren(), "quiet"));
    editor.replaceChildren(el("section", { class: "card" }, el("h2", {}, `Edit route ${route.route_id}`), node));
  };
  const remove = (route) =>
    confirmed(`Delete the route ${route.route_id}?`, message, async () => {
      await api("DELETE", at(ROUTES, route.route_id));
      return `Deleted route ${route.route_id}.`;
    }, refresh);
  async function refresh() {
    const { data } = await api("GET", ROUTES);
    content.replaceChildren(
      table(
        [
          { label: "ID", value: (r) => el("strong", {}, r.route_id) },
          { label: "Priority", value: (r) => String(r.priority) },
          { label: "Path", value: (r) => [el("code", {}, r.path_pattern), r.is_regex ? badge("regex", "info") : null] },
          { label: "Methods", value: (r) => list(r.methods) },
          { label: "Target", value: (r) => `${r.target_type}: ${r.target_value}` },
          { label: "Scope", value: (r) => (r.scope === "proxy" ? list(r.proxy_hostnames) : "all proxies") },
          { label: "State", value: (r) => (r.enabled ? badge("enabled", "ok") : badge("disabled", "warn")) },
          { label: "Description", class: "clip", value: (r) => r.description || "" },
          { label: "", class: "row-actions", value: (r) => [button("Edit", () => edit(r)), button("Delete", () => remove(r), "danger")] },
        ],
        data,
        { empty: "No routes yet.", key: (r) => r.route_id },
      ),
    );
  }
  await refresh();
}
