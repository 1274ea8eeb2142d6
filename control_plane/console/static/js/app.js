// The console's shell: session, hash router, header (project/environment switcher, propagation, role,
// Sign out), navigation, and the page in <main>. Pages are modules under pages/, loaded when first shown;
// each exports `render(ctx)` returning the page's node.

import { ApiError, get, getAll, request, setChangeListener, setCsrfToken, setUnauthenticatedHandler } from "./api.js";
import { h, replace } from "./dom.js";
import { propagationIndicator } from "./propagation.js";
import { badge, button, displayName, errorBanner, loading, select } from "./ui.js";

const ROLE_RANK = { reader: 1, writer: 2, admin: 3 };

/** Routes: [pattern, page module, names of the captured parts]. */
const ROUTES = [
  [/^\/signin$/, "signin", []],
  [/^\/(projects)?$/, "projects", []],
  [/^\/p\/([^/]+)$/, "project-home", ["project"]],
  [/^\/p\/([^/]+)\/environments$/, "environments", ["project"]],
  [/^\/p\/([^/]+)\/webhooks$/, "webhooks", ["project"]],
  [/^\/p\/([^/]+)\/webhooks\/([^/]+)$/, "webhook", ["project", "webhook"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/flags$/, "flags", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/flags\/new$/, "flag-new", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/flags\/([^/]+)$/, "flag", ["project", "env", "flag"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/flags\/([^/]+)\/history$/, "flag-history", ["project", "env", "flag"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/segments$/, "segments", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/segments\/([^/]+)$/, "segment", ["project", "env", "segment"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/audit$/, "audit", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/keys$/, "keys", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/scheduled$/, "scheduled", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/requests$/, "requests", ["project", "env"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/requests\/(\d+)$/, "request", ["project", "env", "request"]],
  [/^\/p\/([^/]+)\/e\/([^/]+)\/operations$/, "operations", ["project", "env"]],
];

const PAGE_MODULES = {
  signin: () => import("./pages/signin.js"),
  projects: () => import("./pages/projects.js"),
  environments: () => import("./pages/environments.js"),
  flags: () => import("./pages/flags.js"),
  "flag-new": () => import("./pages/flag-new.js"),
  flag: () => import("./pages/flag.js"),
  "flag-history": () => import("./pages/flag-history.js"),
  segments: () => import("./pages/segments.js"),
  segment: () => import("./pages/segment.js"),
  audit: () => import("./pages/audit.js"),
  keys: () => import("./pages/keys.js"),
  operations: () => import("./pages/operations.js"),
  scheduled: () => import("./pages/scheduled.js"),
  requests: () => import("./pages/requests.js"),
  request: () => import("./pages/request.js"),
  webhooks: () => import("./pages/webhooks.js"),
  webhook: () => import("./pages/webhook.js"),
};

const state = {
  session: null,
  checkedSession: false,
  returnTo: null,
  signedOutMessage: null,
  projects: null,
  environments: new Map(), // project key → EnvironmentOut list
  lastEnv: new Map(), // project key → the environment last shown
  renderToken: 0,
  firstRender: true,
};

const root = document.getElementById("app");
const propagation = propagationIndicator();
setChangeListener(() => propagation.nudge());

/** "#/p/demo/e/production/flags" from ["p", "demo", "e", "production", "flags"] (parts are encoded). */
export function href(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
}

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Go somewhere instead of the current entry (a redirect), so Back does not bounce through it again. */
function redirect(hash) {
  if (location.hash === hash) render();
  else location.replace(hash);
}

function parseRoute() {
  const path = decodeURI(location.hash.replace(/^#/, "")) || "/";
  for (const [pattern, page, names] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      const params = {};
      names.forEach((name, i) => {
        params[name] = decodeURIComponent(match[i + 1]);
      });
      return { page, params, path };
    }
  }
  return { page: "not-found", params: {}, path };
}

function can(role) {
  return Boolean(state.session) && ROLE_RANK[state.session.role] >= ROLE_RANK[role];
}

async function loadProjects(force = false) {
  if (!state.projects || force) state.projects = await getAll("/projects");
  return state.projects;
}

async function loadEnvironments(project, force = false) {
  if (!state.environments.has(project) || force) {
    const { body } = await get(`/projects/${encodeURIComponent(project)}/environments`);
    state.environments.set(project, body.items);
  }
  return state.environments.get(project);
}

async function checkSession() {
  try {
    const { body } = await get("/sessions/current");
    setSession(body);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    state.session = null;
  }
  state.checkedSession = true;
}

function setSession(body) {
  state.session = body;
  setCsrfToken(body ? body.csrf_token : null);
  state.projects = null;
  state.environments.clear();
}

/** After a successful sign-in (the sign-in page calls this). */
export function signedIn(session) {
  setSession(session);
  const target = state.returnTo && state.returnTo !== "#/signin" ? state.returnTo : "#/";
  state.returnTo = null;
  redirect(target);
}

async function signOut() {
  try {
    await request("DELETE", "/sessions/current");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) {
      state.signedOutMessage = `Signing out on the server failed (${error.message}); the session will expire on its own.`;
    }
  }
  setSession(null);
  propagation.stop();
  navigate("#/signin");
}

setUnauthenticatedHandler(() => {
  if (!state.session) return;
  setSession(null);
  propagation.stop();
  state.signedOutMessage = "Your session has ended. Sign in again to continue.";
  state.returnTo = location.hash;
  navigate("#/signin");
});

// --- the shell ----------------------------------------------------------------------------------

function header(route, projects, environments) {
  const { project, env } = route.params;
  const session = state.session;
  const parts = [h("a", { class: "brand", href: "#/" }, h("span", { class: "logo", "aria-hidden": "true" }, "⚑"), "Flagyard")];
  if (projects) {
    const projectSelect = select(
      [["", "Choose a project…"], ...projects.map((p) => [p.key, displayName(p)])],
      { value: project || "", id: "project-switcher" },
    );
    projectSelect.addEventListener("change", () => {
      navigate(projectSelect.value ? href("p", projectSelect.value) : "#/");
    });
    parts.push(h("div", { class: "switcher" }, h("label", { for: "project-switcher" }, "Project"), projectSelect));
  }
  if (project && environments) {
    const envSelect = select(
      [...(env ? [] : [["", environments.length ? "Choose…" : "None yet"]]), ...environments.map((e) => [e.key, displayName(e)])],
      { value: env || "", id: "env-switcher" },
    );
    envSelect.addEventListener("change", () => {
      const next = envSelect.value;
      if (!next) return;
      if (env) navigate("#" + route.path.replace(`/e/${env}/`, `/e/${encodeURIComponent(next)}/`));
      else navigate(href("p", project, "e", next, "flags"));
    });
    parts.push(h("div", { class: "switcher" }, h("label", { for: "env-switcher" }, "Environment"), envSelect));
  }
  parts.push(h("div", { class: "spacer" }));
  if (project && env) parts.push(propagation.element);
  if (session) {
    const scope = session.project ? `project ${session.project}` : "all projects";
    parts.push(
      badge(session.role, `role role-${session.role}`, {
        "data-testid": "role-badge",
        title: `Signed in with ${session.key_prefix}… (${session.role}, ${scope}); session expires ${new Date(session.expires_at).toLocaleString()}`,
      }),
      button("Sign out", signOut, { class: "ghost" }),
    );
  }
  return h("header", { class: "topbar" }, ...parts);
}

function nav(route, env) {
  const { project } = route.params;
  const links = [];
  const link = (label, target, active) => h("a", { href: target, class: active ? "active" : null, "aria-current": active ? "page" : null }, label);
  links.push(link("Projects", "#/", route.page === "projects"));
  if (project) {
    links.push(link("Environments", href("p", project, "environments"), route.page === "environments"));
    if (can("writer")) links.push(link("Webhooks", href("p", project, "webhooks"), route.page.startsWith("webhook")));
  }
  if (project && env) {
    const base = ["p", project, "e", env];
    links.push(
      link("Flags", href(...base, "flags"), route.page.startsWith("flag")),
      link("Segments", href(...base, "segments"), route.page.startsWith("segment")),
      link("Audit log", href(...base, "audit"), route.page === "audit"),
      link("Scheduled", href(...base, "scheduled"), route.page === "scheduled"),
      link("Requests", href(...base, "requests"), route.page === "requests" || route.page === "request"),
    );
    if (can("admin")) links.push(link("Keys", href(...base, "keys"), route.page === "keys"));
    links.push(link("Operations", href(...base, "operations"), route.page === "operations"));
  }
  return h("nav", { class: "sidenav", "aria-label": "Main" }, h("ul", {}, links.map((l) => h("li", {}, l))));
}

function notFound(route) {
  return h(
    "section",
    { class: "page" },
    h("h1", { tabindex: "-1" }, "Page not found"),
    h("p", {}, "Nothing lives at ", h("code", {}, route.path), ". ", h("a", { href: "#/" }, "Go to the projects")),
  );
}

async function render() {
  const token = ++state.renderToken;
  // A dialog belongs to the page it was opened on (Back while it is open must not leave it over the next).
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  const isCurrent = () => token === state.renderToken;
  const route = parseRoute();
  try {
    if (!state.checkedSession) {
      replace(root, h("main", { id: "main", class: "boot" }, loading("Starting the console…")));
      await checkSession();
      if (!isCurrent()) return;
    }
    if (!state.session && route.page !== "signin") {
      state.returnTo = location.hash || "#/";
      redirect("#/signin");
      return;
    }
    if (state.session && route.page === "signin") {
      redirect("#/");
      return;
    }
    if (route.page === "signin") {
      propagation.stop();
      const mod = await PAGE_MODULES.signin();
      if (!isCurrent()) return;
      const message = state.signedOutMessage;
      state.signedOutMessage = null;
      replace(root, h("main", { id: "main", class: "signin-main" }, mod.render({ signedIn, message })));
      document.title = "Sign in · Flagyard";
      focusHeading(root);
      return;
    }
    const { project, env } = route.params;
    const projects = await loadProjects();
    let environments = null;
    if (project) environments = await loadEnvironments(project);
    if (!isCurrent()) return;
    if (route.page === "project-home") {
      const last = state.lastEnv.get(project);
      const target = environments.some((e) => e.key === last) ? last : environments[0]?.key;
      redirect(target ? href("p", project, "e", target, "flags") : href("p", project, "environments"));
      return;
    }
    // Pages without an environment in their route (Environments) keep the navigation of the last one.
    if (project && env) state.lastEnv.set(project, env);
    const remembered = project ? state.lastEnv.get(project) : null;
    const navEnv =
      env || (environments && environments.some((e) => e.key === remembered) ? remembered : environments?.[0]?.key);
    const main = h("main", { id: "main", class: "content", tabindex: "-1" }, loading());
    replace(
      root,
      h("a", { class: "skip-link", href: "#main", on: { click: (e) => { e.preventDefault(); main.focus(); } } }, "Skip to content"),
      header(route, projects, environments),
      h("div", { class: "layout" }, nav(route, navEnv), main),
    );
    if (project && env) propagation.start(project, env);
    else propagation.stop();
    if (route.page === "not-found") {
      replace(main, notFound(route));
      return;
    }
    const envObj = environments && env ? environments.find((e) => e.key === env) : null;
    if (env && !envObj) {
      replace(main, h("section", { class: "page" }, h("h1", { tabindex: "-1" }, "Environment not found"), h("p", {}, "The environment ", h("code", {}, env), " does not exist in this project. ", h("a", { href: href("p", project, "environments") }, "See its environments"))));
      return;
    }
    const ctx = {
      params: route.params,
      project,
      env,
      envObj,
      environments: environments || [],
      projects,
      session: state.session,
      can,
      isGlobalAdmin: state.session.role === "admin" && !state.session.project,
      href,
      navigate,
      isCurrent,
      title(text) {
        if (isCurrent()) document.title = `${text} · Flagyard`;
      },
      /** Re-render the current route (after a change). */
      reload: () => render(),
      /** Forget cached projects/environments (after creating or deleting one), then re-render or go. */
      async invalidate(target) {
        state.projects = null;
        state.environments.clear();
        if (target) navigate(target);
        else render();
      },
    };
    const mod = await PAGE_MODULES[route.page]();
    const node = await mod.render(ctx);
    if (!isCurrent()) return;
    replace(main, node);
    focusHeading(main);
  } catch (error) {
    if (!isCurrent()) return;
    if (error instanceof ApiError && error.status === 401) return; // the handler shows the sign-in page
    const main = root.querySelector("main") || root.appendChild(h("main", { id: "main", class: "content" }));
    replace(
      main,
      h(
        "section",
        { class: "page" },
        h("h1", { tabindex: "-1" }, "Something went wrong"),
        errorBanner(error, { title: error instanceof ApiError && error.status === 404 ? "Not found" : "Could not load this page" }),
        h("p", {}, button("Try again", () => render()), " ", h("a", { href: "#/" }, "Go to the projects")),
      ),
    );
  }
}

/** After navigation, move focus to the page's heading so keyboard and screen-reader users start there. */
function focusHeading(container) {
  if (state.firstRender) {
    state.firstRender = false;
    return;
  }
  const heading = container.querySelector("h1");
  if (heading) {
    if (!heading.hasAttribute("tabindex")) heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: false });
  }
}

window.addEventListener("hashchange", () => render());
render();
