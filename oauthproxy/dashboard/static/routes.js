// The routes page: create, edit and delete path routes.

import { api, at, badge, button, deleter, el, form, frame, list, panel, splitList, table } from "./dom.js";

const ROUTES = "/api/v1/routes/";

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
  const remove = deleter("route", ROUTES, (route) => route.route_id, message, refresh);
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
