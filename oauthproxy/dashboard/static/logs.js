// The live request log: the newest entries, then every new one as it arrives
// (`GET /api/v1/logs/follow` with `after` and `wait`, a long poll), newest first.

import { api, badge, el, say } from "./dom.js";

const KEEP = 500;
const WAIT_SECONDS = 20;
const RETRY_MS = 3000;

const time = (seconds) => new Date(seconds * 1000).toISOString().slice(11, 19);

function statusBadge(status) {
  if (!status) return "—";
  return badge(String(status), status >= 500 ? "bad" : status >= 400 ? "warn" : "ok");
}

function row(entry) {
  return el(
    "tr",
    { "data-host": entry.hostname || "" },
    el("td", {}, time(entry.timestamp)),
    el("td", {}, entry.hostname || "—"),
    el("td", {}, entry.method || ""),
    el("td", {}, entry.protocol || ""),
    el("td", { class: "clip" }, entry.request_path || entry.gateway_reason || ""),
    el("td", {}, statusBadge(entry.status)),
    el("td", { class: "num" }, entry.duration_ms ? entry.duration_ms.toFixed(1) : ""),
    el("td", {}, entry.client_ip || ""),
    el("td", {}, entry.user || ""),
    el("td", {}, entry.event || ""),
  );
}

export async function logs(view, { signal }) {
  const message = el("p", { class: "message", role: "status", hidden: true });
  const filter = el("input", { type: "search", id: "log-filter", placeholder: "hostname contains…", maxlength: 253 });
  const live = el("span", { class: "live" }, "live");
  const body = el("tbody", {});
  const columns = ["Time (UTC)", "Host", "Method", "Protocol", "Path", "Status", "ms", "Client", "User", "Event"];
  view.replaceChildren(
    el("h1", {}, "Request log ", live),
    el("div", { class: "toolbar" }, filter),
    message,
    el("div", { class: "scroll" }, el("table", { id: "log" }, el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))), body)),
  );
  const shown = (tr) => !filter.value || tr.dataset.host.includes(filter.value.trim().toLowerCase());
  filter.addEventListener("input", () => {
    for (const tr of body.rows) tr.hidden = !shown(tr);
  });
  const add = (entries) => {
    for (const entry of entries) {
      const tr = row(entry);
      tr.hidden = !shown(tr);
      body.prepend(tr);
    }
    while (body.rows.length > KEEP) body.lastElementChild.remove();
  };

  const first = await api("GET", "/api/v1/logs/follow?limit=100", undefined, { signal });
  add(first.data.logs);
  follow(first.data.last, add, message, live, signal);
}

async function follow(last, add, message, live, signal) {
  while (!signal.aborted) {
    try {
      const query = new URLSearchParams({ after: last, wait: String(WAIT_SECONDS), limit: "200" });
      const { data } = await api("GET", `/api/v1/logs/follow?${query}`, undefined, { signal });
      last = data.last;
      add(data.logs);
      say(message, "");
      live.className = "live";
    } catch (error) {
      if (signal.aborted) return;
      live.className = "live paused";
      say(message, `Following paused: ${error.message}; retrying.`, "error");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
}
