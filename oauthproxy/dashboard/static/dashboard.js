// The dashboard's shell: sign in and out, the navigation, and which page shows (`#proxies`, …).

import { certificates } from "./certificates.js";
import { api, el, say, session } from "./dom.js";
import { oauth, services, tokens } from "./gateway.js";
import { logs } from "./logs.js";
import { proxies } from "./proxies.js";
import { routes } from "./routes.js";

const PAGES = { proxies, certificates, routes, services, tokens, oauth, logs };
const ADMIN_PAGES = new Set(["tokens", "oauth"]);

const $ = (id) => document.getElementById(id);
let who = null;
let current = null;

async function signIn(token) {
  session.token = token;
  try {
    who = (await api("GET", "/api/v1/tokens/info")).data;
  } catch (error) {
    session.token = null;
    who = null;
    throw error;
  }
}

/** After GitHub's callback: take the session it left in a cookie for this page (once). */
async function takeGitHubSession() {
  history.replaceState(null, "", location.pathname);
  const response = await fetch("/dashboard/session", {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { Accept: "application/json" },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || !body.token) throw new Error((body && body.detail) || "GitHub sign-in did not finish; sign in again.");
  await signIn(body.token);
}

/** A session made by signing in with GitHub ends on the server too; a token stays valid. */
function endGitHubSession(token) {
  if (!token || !token.startsWith("dsh_")) return;
  fetch("/dashboard/session", { method: "DELETE", credentials: "omit", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
}

async function offerGitHub() {
  try {
    const response = await fetch("/dashboard/session/options", { credentials: "omit", cache: "no-store" });
    $("github-sign-in").hidden = !(response.ok && (await response.json()).github);
  } catch {
    $("github-sign-in").hidden = true;
  }
}

function signOut(reason = "") {
  endGitHubSession(session.token);
  session.token = null;
  who = null;
  if (current) current.abort();
  current = null;
  history.replaceState(null, "", location.pathname);
  show(reason);
}

function show(reason = "") {
  const signedIn = Boolean(who);
  $("sign-in").hidden = signedIn;
  $("page").hidden = !signedIn;
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  $("who").replaceChildren(
    signedIn ? el("span", {}, "Signed in as ", el("strong", {}, who.name), ` (${who.is_admin ? "admin" : "owner"})`) : "",
  );
  for (const link of document.querySelectorAll("#nav [data-admin]")) link.hidden = !(who && who.is_admin);
  say($("sign-in-error"), reason, "error");
  if (signedIn) route();
  else $("page").replaceChildren();
}

async function route() {
  if (!who) return;
  let name = location.hash.slice(1) || "proxies";
  if (!(name in PAGES) || (ADMIN_PAGES.has(name) && !who.is_admin)) name = "proxies";
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.getAttribute("href") === `#${name}`;
    link.classList.toggle("current", here);
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const view = el("div", { class: "view", "data-page": name });
  $("page").replaceChildren(view);
  try {
    await PAGES[name](view, { signal: controller.signal, who });
  } catch (error) {
    if (!controller.signal.aborted) {
      view.append(el("p", { class: "message error", role: "alert" }, error.message));
    }
  }
}

function start() {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("token");
    try {
      await signIn(input.value.trim());
      input.value = "";
      show();
    } catch (error) {
      show(error.status === 401 ? "That token is not valid." : error.message);
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  document.addEventListener("token-refused", () => signOut("The token is no longer valid; sign in again."));
  window.addEventListener("hashchange", route);
  offerGitHub();
  if (new URLSearchParams(location.search).get("signed-in") === "github") {
    takeGitHubSession().then(() => show(), (error) => show(error.message));
  } else if (session.token) {
    signIn(session.token).then(() => show(), () => show("Sign in again."));
  } else {
    show();
  }
}

start();
