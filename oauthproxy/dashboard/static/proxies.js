// The proxies page: each proxy's HTTP, HTTPS and auth state; create, edit (auth too), delete.

import { api, at, badge, button, deleter, el, form, frame, list, panel, splitList, table } from "./dom.js";

const PROXIES = "/api/v1/proxy/targets/";
const onOff = (on) => badge(on ? "on" : "off", on ? "ok" : "plain");

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
  const remove = deleter("proxy", PROXIES, (proxy) => proxy.hostname, message, refresh);
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
  const users = proxy.auth_required_users;
  const who = [
    users === null || users === undefined ? "default users" : users.includes("*") ? "any GitHub user" : list(users),
    ...(proxy.auth_required_emails || []),
    ...(proxy.auth_required_groups || []).map((group) => `group ${group}`),
  ];
  return [badge(proxy.auth_mode, "info"), el("div", { class: "hint" }, who.join(", "))];
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
  node.querySelector(".actions").append(button("Close", () => editor.replaceChildren(), "quiet"));
  return el(
    "section",
    { class: "card" },
    el("h2", {}, `Edit ${proxy.hostname}`),
    node,
    el("h2", {}, "Sign-in (GitHub, through the OAuth server)"),
    authEditor(proxy, refresh),
  );
}

const AUTH_MODES = ["forward", "redirect", "passthrough"];
const orNull = (text) => (splitList(text).length ? splitList(text) : null);

function authEditor(proxy, refresh) {
  const fields = [
    { name: "auth_enabled", label: "Require sign-in", type: "checkbox", value: proxy.auth_enabled },
    { name: "auth_mode", label: "Mode", type: "select", options: AUTH_MODES, value: proxy.auth_mode },
    {
      name: "auth_required_users",
      label: "GitHub users (comma-separated; * any; empty: the default)",
      value: (proxy.auth_required_users || []).join(", "),
    },
    { name: "auth_required_emails", label: "Emails", value: (proxy.auth_required_emails || []).join(", ") },
    { name: "auth_required_groups", label: "Groups", value: (proxy.auth_required_groups || []).join(", ") },
  ];
  return form("proxy-auth", fields, "Save sign-in", async (values) => {
    if (!values.auth_enabled) {
      await api("DELETE", `${at(PROXIES, proxy.hostname)}/auth`);
    } else {
      await api("POST", `${at(PROXIES, proxy.hostname)}/auth`, {
        auth_mode: values.auth_mode,
        auth_required_users: orNull(values.auth_required_users),
        auth_required_emails: orNull(values.auth_required_emails),
        auth_required_groups: orNull(values.auth_required_groups),
      });
    }
    await refresh();
    return values.auth_enabled ? `Sign-in required on ${proxy.hostname}.` : `Sign-in off on ${proxy.hostname}.`;
  });
}
