// Keys (admin): admin-API keys (global or per project) and the current environment's SDK keys.
// Create and rotate show the new secret once (Copy); revoke asks first.

import { get, getAll, request } from "../api.js";
import { h } from "../dom.js";
import {
  badge,
  button,
  confirmDialog,
  emptyState,
  errorBanner,
  field,
  fillErrorBanner,
  formDialog,
  pageHeader,
  select,
  showSecretOnce,
  table,
  textInput,
  timeAgo,
  toast,
} from "../ui.js";

function expiresIso(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Revoked, or expired: it no longer works. */
function isDead(key) {
  const now = Date.now();
  return Boolean((key.revoked_at && new Date(key.revoked_at).getTime() <= now) || (key.expires_at && new Date(key.expires_at).getTime() <= now));
}

/** Filters survive moving between pages in one visit. */
const view = { showDead: false };

function status(key, replacedBy) {
  if (isDead(key)) return badge(key.revoked_at ? "revoked" : "expired", "off");
  const until = key.revoked_at || key.expires_at;
  if (replacedBy) {
    return badge("rotating out", "warn", { title: `Replaced by ${replacedBy.prefix}…; works until ${until ? new Date(until).toLocaleString() : "revoked"}` });
  }
  if (key.revoked_at) return badge("retiring", "warn", { title: `Stops working ${new Date(key.revoked_at).toLocaleString()}` });
  return badge("active", "on");
}

export async function render(ctx) {
  ctx.title(`Keys · ${ctx.project}`);
  if (!ctx.can("admin")) {
    return h("section", { class: "page" }, pageHeader("Keys"), h("p", {}, "Managing keys needs an admin key; you are signed in as ", ctx.session.role, "."));
  }
  const p = encodeURIComponent(ctx.project);
  const sdkBase = `/projects/${p}/environments/${encodeURIComponent(ctx.env)}/sdk-keys`;
  const [apiKeys, sdkKeys] = await Promise.all([getAll("/api-keys", ctx.isGlobalAdmin ? {} : { project: ctx.project }), get(sdkBase).then((r) => r.body.items)]);
  const banner = errorBanner(null);

  async function createApiKey() {
    const scopeOptions = [[ctx.project, `Project ${ctx.project} only`]];
    if (ctx.isGlobalAdmin) scopeOptions.push(["", "All projects (global)"]);
    const fields = {
      name: field("Name", textInput({ maxlength: 256, autofocus: true, placeholder: "ci-deploy" })),
      role: field("Role", select([["reader", "reader — read only"], ["writer", "writer — change flags and segments"], ["admin", "admin — also environments and keys"]], { value: "reader" })),
      project: field("Scope", select(scopeOptions, { value: ctx.project })),
      expires_at: field("Expires (optional)", h("input", { type: "datetime-local" })),
    };
    const created = await formDialog({
      title: "New API key",
      fields,
      submitLabel: "Create key",
      submit: async () =>
        (
          await request("POST", "/api-keys", {
            body: {
              name: fields.name.input.value.trim(),
              role: fields.role.input.value,
              project: fields.project.input.value || null,
              expires_at: expiresIso(fields.expires_at.input.value),
            },
          })
        ).body,
    });
    if (created) {
      await showSecretOnce("Your new API key", created);
      ctx.reload();
    }
  }

  async function createSdkKey() {
    const fields = {
      name: field("Name", textInput({ maxlength: 256, autofocus: true, placeholder: "checkout-service" })),
      expires_at: field("Expires (optional)", h("input", { type: "datetime-local" })),
    };
    const created = await formDialog({
      title: `New SDK key for ${ctx.env}`,
      fields,
      submitLabel: "Create key",
      submit: async () => (await request("POST", sdkBase, { body: { name: fields.name.input.value.trim(), expires_at: expiresIso(fields.expires_at.input.value) } })).body,
    });
    if (created) {
      await showSecretOnce(`Your new SDK key for ${ctx.env}`, created);
      ctx.reload();
    }
  }

  async function rotate(key, path) {
    const answer = await confirmDialog({
      title: `Rotate ${key.name}?`,
      message: h("p", {}, "A replacement key is issued and shown once. The old key ", h("code", {}, key.prefix), " keeps working for the server's overlap window, so clients can switch over."),
    });
    if (!answer) return;
    try {
      const { body } = await request("POST", `${path}/${key.id}/rotate`);
      await showSecretOnce(`Replacement for ${key.name}`, body);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not rotate ${key.name}`);
    }
  }

  async function revoke(key, path) {
    const ok = await confirmDialog({
      title: `Revoke ${key.name}?`,
      message: h("p", {}, "The key ", h("code", {}, key.prefix), " stops working immediately", key.role === "sdk" ? " (data planes refuse it within seconds)" : "", ". This cannot be undone.", key.id === own ? h("strong", {}, " It is the key this session signed in with: you will be signed out.") : null),
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", `${path}/${key.id}`);
      toast(`Revoked ${key.name}`);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not revoke ${key.name}`);
    }
  }

  const own = ctx.session.key_id;
  const replacements = new Map([...apiKeys, ...sdkKeys].filter((k) => k.replaces_key_id !== null).map((k) => [k.replaces_key_id, k]));
  const shown = (keys) => (view.showDead ? keys : keys.filter((k) => !isDead(k)));
  const deadCount = [...apiKeys, ...sdkKeys].filter(isDead).length;
  const showDead = h("input", {
    type: "checkbox",
    id: "show-dead-keys",
    checked: view.showDead,
    on: {
      change: (e) => {
        view.showDead = e.target.checked;
        ctx.reload();
      },
    },
  });
  function columns(path, withScope) {
    return [
      { label: "Name", cell: (k) => h("span", {}, h("strong", {}, k.name), k.id === own ? [" ", badge("this session", "tag")] : null) },
      { label: "Key", cell: (k) => h("code", {}, `${k.prefix}…`) },
      withScope ? { label: "Role", cell: (k) => k.role } : null,
      withScope ? { label: "Scope", cell: (k) => (k.project ? `project ${k.project}` : "global") } : null,
      { label: "Status", cell: (k) => status(k, replacements.get(k.id)) },
      { label: "Created", cell: (k) => timeAgo(k.created_at) },
      { label: "Expires", cell: (k) => (k.expires_at ? timeAgo(k.expires_at) : h("span", { class: "muted" }, "never")) },
      {
        label: h("span", { class: "visually-hidden" }, "Actions"),
        class: "actions-cell",
        cell: (k) =>
          isDead(k)
            ? null
            : h("span", { class: "row-actions" }, replacements.has(k.id) ? null : button("Rotate", () => rotate(k, path), { "aria-label": `Rotate ${k.name}`, "data-testid": `rotate-${k.id}` }), button("Revoke", () => revoke(k, path), { class: "danger ghost", "aria-label": `Revoke ${k.name}`, "data-testid": `revoke-${k.id}` })),
      },
    ].filter(Boolean);
  }

  return h(
    "section",
    { class: "page" },
    pageHeader(
      "Keys",
      "Secrets are shown once, when a key is created or rotated; only their hashes are stored.",
      deadCount ? h("label", { class: "checkbox", for: "show-dead-keys" }, showDead, ` Show revoked and expired keys (${deadCount})`) : null,
    ),
    banner,
    h(
      "section",
      { class: "card", "aria-labelledby": "sdk-h" },
      h("div", { class: "section-header" }, h("h2", { id: "sdk-h" }, `SDK keys for ${ctx.env}`), button("New SDK key", createSdkKey, { class: "primary" })),
      h("p", { class: "muted small" }, "Server-side SDKs and data-plane clients of this environment use these."),
      shown(sdkKeys).length
        ? table(columns(sdkBase, false), shown(sdkKeys), { rowAttrs: (k) => ({ "data-testid": `sdk-key-row-${k.id}`, "data-key-name": k.name }), caption: "SDK keys" })
        : emptyState(sdkKeys.length ? `No active SDK keys for ${ctx.env}` : `No SDK keys for ${ctx.env} yet`, "create one with New SDK key so services can evaluate flags"),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "api-h" },
      h("div", { class: "section-header" }, h("h2", { id: "api-h" }, "API keys"), button("New API key", createApiKey, { class: "primary" })),
      h("p", { class: "muted small" }, "For the admin API, the CLI and this console: admin, writer or reader, global or scoped to a project."),
      shown(apiKeys).length
        ? table(columns("/api-keys", true), shown(apiKeys), { rowAttrs: (k) => ({ "data-testid": `api-key-row-${k.id}`, "data-key-name": k.name }), caption: "API keys" })
        : emptyState(apiKeys.length ? "No active API keys in this scope" : "No API keys in this scope", "create one with New API key"),
    ),
  );
}
