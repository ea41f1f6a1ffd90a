// DOM building and the API client of the dashboard.
//
// Everything shown is put in the page as text (`append(string)`, `textContent`,
// `setAttribute`), never parsed as HTML: a hostname or an error message can never become markup.

const TOKEN_KEY = "oauthproxy.dashboard.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, body, text) {
    const detail = (body && typeof body === "object" && (body.detail || body.error)) || text || "request failed";
    const field = body && typeof body === "object" ? body.field : null;
    super(`${status}: ${detail}${field && !String(detail).includes(field) ? ` (${field})` : ""}`);
    this.status = status;
    this.body = body;
  }
}

/** Call the admin API with the signed-in token; answers `{data, headers}` or throws ApiError. */
export async function api(method, path, body, { signal } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401 && session.token) {
    document.dispatchEvent(new CustomEvent("token-refused"));
  }
  if (!response.ok) throw new ApiError(response.status, data, text);
  return { data, headers: response.headers };
}

/** `at("/api/v1/routes/", id)`: a collection's path and the encoded parts after it. */
export const at = (base, ...parts) => base + parts.map((part) => encodeURIComponent(part)).join("/");

/** `el("td", {class: "x"}, "text", child)`: an element with attributes and text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const badge = (text, kind = "plain") => el("span", { class: `badge ${kind}` }, text);

export const button = (label, onclick, kind = "") =>
  el("button", { type: "button", class: kind, onclick }, label);

/** A table; `columns` are `{label, value: row => text or node}`; `key` names each row. */
export function table(columns, rows, { empty = "Nothing here yet.", key } = {}) {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  const head = el("tr", {}, columns.map((column) => el("th", {}, column.label)));
  const body = rows.map((row) =>
    el(
      "tr",
      { "data-key": key ? key(row) : null },
      columns.map((column) => el("td", { class: column.class }, column.value(row))),
    ),
  );
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
}

/** A labelled input; `spec` is `{name, label, type, value, options, required, placeholder}`. */
export function field(spec) {
  const id = `f-${spec.form}-${spec.name}`;
  let input;
  if (spec.type === "checkbox") {
    input = el("input", { id, name: spec.name, type: "checkbox", checked: Boolean(spec.value) });
    return el("label", { class: "check", for: id }, input, " ", spec.label);
  }
  if (spec.type === "select") {
    input = el(
      "select",
      { id, name: spec.name },
      spec.options.map((option) => el("option", { value: option, selected: option === spec.value }, option)),
    );
  } else {
    input = el("input", {
      id,
      name: spec.name,
      type: spec.type || "text",
      value: spec.value ?? "",
      required: spec.required,
      placeholder: spec.placeholder,
      spellcheck: "false",
      maxlength: 2048,
    });
  }
  return el("div", { class: "field" }, el("label", { for: id }, spec.label), input);
}

/** A form of `fields`; `submit(values)` gets each field's value (checkboxes as booleans). */
export function form(name, fields, submitLabel, submit) {
  const message = el("p", { class: "message", role: "status", hidden: true });
  const node = el(
    "form",
    { class: "form", "data-form": name },
    fields.map((spec) => field({ ...spec, form: name })),
    el("div", { class: "actions" }, el("button", { type: "submit" }, submitLabel)),
    message,
  );
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    for (const spec of fields) {
      const input = node.elements.namedItem(spec.name);
      values[spec.name] = spec.type === "checkbox" ? input.checked : input.value.trim();
    }
    say(message, "Working…");
    try {
      say(message, (await submit(values)) || "Done.", "ok");
    } catch (error) {
      say(message, error.message, "error");
    }
  });
  return node;
}

export function say(node, text, kind = "") {
  node.textContent = text;
  node.className = `message ${kind}`;
  node.hidden = !text;
}

/** `2026-12-03T18:14:30Z` → `2026-12-03 18:14 UTC`. */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export const list = (values) => (values && values.length ? values.join(", ") : "—");

export const splitList = (text) =>
  text
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);

// --- page building -----------------------------------------------------------------------------

/** The page's frame: a title, a message line, optional panels, then the content. */
export function frame(view, title, ...panels) {
  const message = el("p", { class: "message", role: "status", hidden: true });
  const editor = el("div", { class: "editor" });
  const content = el("div", { class: "content" }, el("p", { class: "empty" }, "Loading…"));
  view.replaceChildren(el("h1", {}, title), message, ...panels, editor, content);
  return { message, editor, content };
}

export function panel(summary, body) {
  return el("details", { class: "panel" }, el("summary", {}, summary), body);
}

export async function confirmed(question, message, action, refresh) {
  if (!window.confirm(question)) return;
  try {
    say(message, await action(), "ok");
    await refresh();
  } catch (error) {
    say(message, error.message, "error");
  }
}

/** A row's Delete action: asks, deletes `collection` + the record's name, says so, refreshes. */
export const deleter = (what, collection, nameOf, message, refresh) => (record) =>
  confirmed(`Delete the ${what} ${nameOf(record)}?`, message, async () => {
    await api("DELETE", at(collection, nameOf(record)));
    return `Deleted ${what} ${nameOf(record)}.`;
  }, refresh);
