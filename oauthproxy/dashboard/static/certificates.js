// The certificates page: status, expiry and last error; create (ACME or self-signed), renew, delete.

import { api, at, badge, button, confirmed, deleter, el, form, frame, list, panel, say, splitList, table, when } from "./dom.js";

const CERTIFICATES = "/api/v1/certificates/";

const CERT_STATES = { active: "ok", pending: "warn", renewing: "warn", error: "bad", expired: "bad" };
const IN_PROGRESS = new Set(["pending", "renewing"]);
const POLL_MS = 3000;

export async function certificates(view, { signal }) {
  let poll = null;
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
  const remove = deleter("certificate", CERTIFICATES, (cert) => cert.cert_name, message, refresh);
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
    clearTimeout(poll);  // while one is being issued or renewed, its status is followed
    if (data.some((c) => IN_PROGRESS.has(c.status)) && !signal.aborted) {
      poll = setTimeout(() => refresh().catch((error) => say(message, error.message, "error")), POLL_MS);
    }
  }
  signal.addEventListener("abort", () => clearTimeout(poll));
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

