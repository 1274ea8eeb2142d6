// A project's environments: list, create, delete, set the approvals a change needs and what of the
// evaluated contexts is sampled for impact previews (admin).

import { request } from "../api.js";
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
  isProductionLike,
  pageHeader,
  table,
  timeAgo,
  toast,
} from "../ui.js";
import { keyNameFields, values } from "./projects.js";

export async function render(ctx) {
  ctx.title(`Environments · ${ctx.project}`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/environments`;
  const environments = ctx.environments;
  const banner = errorBanner(null);

  async function create() {
    const fields = keyNameFields();
    const created = await formDialog({
      title: "New environment",
      fields,
      submitLabel: "Create environment",
      submit: async () => (await request("POST", base, { body: values(fields) })).body,
    });
    if (created) {
      toast(`Environment ${created.key} created`);
      ctx.invalidate(ctx.href("p", ctx.project, "e", created.key, "flags"));
    }
  }

  async function remove(env) {
    const ok = await confirmDialog({
      title: `Delete environment ${env.key}?`,
      message: h(
        "p",
        {},
        "Every flag's configuration and SDK key in this environment is deleted, and data planes stop serving it. This cannot be undone.",
      ),
      typed: isProductionLike(env) ? env.key : undefined,
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", `${base}/${encodeURIComponent(env.key)}`, { ifMatch: `"${env.revision}"` });
      toast(`Environment ${env.key} deleted`);
      ctx.invalidate();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not delete ${env.key}`);
    }
  }

  /** Set how many approvals (0–10, from owners other than the author) a change of `env` needs. */
  async function approvals(env) {
    const fields = {
      approvals_required: field("Approvals required", h("input", { type: "number", min: 0, max: 10, step: 1, value: String(env.approvals_required), required: true }), {
        hint: "0–10; 0 turns the policy off. With a policy a change in this environment is proposed as a change request and applied once approved.",
      }),
    };
    const updated = await formDialog({
      title: `Approvals for ${env.key}`,
      fields,
      submitLabel: "Save",
      submit: async () =>
        (
          await request("PATCH", `${base}/${encodeURIComponent(env.key)}`, {
            body: { approvals_required: Number(fields.approvals_required.input.value) },
            ifMatch: `"${env.revision}"`,
          })
        ).body,
    });
    if (updated) {
      toast(`${updated.key} needs ${updated.approvals_required} approval(s)`);
      ctx.invalidate();
    }
  }

  /** Set which context attributes `env` samples (in clear and hashed); both empty turns sampling off. */
  async function sampling(env) {
    const current = env.sampling || { attributes: [], hashed: [] };
    const names = (input) => input.value.split(",").map((n) => n.trim()).filter(Boolean);
    const fields = {
      // Named after the body's field, so the API's /sampling/... errors land here.
      sampling: field("Kept in clear", h("input", { type: "text", value: current.attributes.join(", "), placeholder: "plan, country, app.version", "data-testid": "env-sampling-attributes" }), {
        hint: "Comma-separated attribute paths a sample keeps as they are: what rules test and nobody is identified by.",
      }),
      hashed: field("Kept hashed", h("input", { type: "text", value: current.hashed.join(", "), placeholder: "targeting_key, email", "data-testid": "env-sampling-hashed" }), {
        hint: "Kept only as a salted hash (the salt is per environment and never shown). Leave both empty to stop sampling and delete the sample.",
      }),
    };
    const updated = await formDialog({
      title: `Context sampling in ${env.key}`,
      fields,
      submitLabel: "Save",
      submit: async () => {
        const attributes = names(fields.sampling.input);
        const hashed = names(fields.hashed.input);
        const body = { sampling: attributes.length || hashed.length ? { attributes, hashed } : null };
        return (await request("PATCH", `${base}/${encodeURIComponent(env.key)}`, { body, ifMatch: `"${env.revision}"` })).body;
      },
    });
    if (updated) {
      toast(updated.sampling ? `${updated.key} samples contexts` : `${updated.key} samples nothing`);
      ctx.invalidate();
    }
  }

  const samplingText = (e) =>
    e.sampling ? [...e.sampling.attributes, ...e.sampling.hashed.map((n) => `${n} (hashed)`)].join(", ") : "off";

  const columns = [
    {
      label: "Environment",
      cell: (e) =>
        h(
          "span",
          {},
          h("a", { href: ctx.href("p", ctx.project, "e", e.key, "flags") }, h("strong", {}, e.name)),
          e.name.toLowerCase() !== e.key.toLowerCase() ? [" ", h("code", { class: "muted" }, e.key)] : null,
          isProductionLike(e) ? [" ", badge("production", "warn")] : null,
        ),
    },
    { label: "Description", cell: (e) => e.description || h("span", { class: "muted" }, "—") },
    { label: "Approvals", cell: (e) => h("span", { "data-testid": `env-approvals-${e.key}` }, e.approvals_required ? String(e.approvals_required) : "none"), class: "num" },
    { label: "Sampling", cell: (e) => h("span", { "data-testid": `env-sampling-${e.key}`, class: e.sampling ? null : "muted" }, samplingText(e)) },
    { label: "Revision", cell: (e) => String(e.revision), class: "num" },
    { label: "Updated", cell: (e) => timeAgo(e.updated_at) },
  ];
  if (ctx.can("admin")) {
    columns.push({
      label: h("span", { class: "visually-hidden" }, "Actions"),
      class: "actions-cell",
      cell: (e) =>
        h(
          "span",
          { class: "row-actions" },
          button("Approvals…", () => approvals(e), { "aria-label": `Approvals required in ${e.key}`, "data-testid": `env-set-approvals-${e.key}` }),
          button("Sampling…", () => sampling(e), { "aria-label": `Context sampling in ${e.key}`, "data-testid": `env-set-sampling-${e.key}` }),
          button("Delete", () => remove(e), { class: "danger ghost", "aria-label": `Delete environment ${e.key}` }),
        ),
    });
  }
  return h(
    "section",
    { class: "page" },
    pageHeader(`Environments`, `Project ${ctx.project}: each environment has its own flag configurations, SDK keys and data-plane revision.`, ...(ctx.can("admin") ? [button("New environment", create, { class: "primary" })] : [])),
    banner,
    environments.length
      ? table(columns, environments, { rowAttrs: (e) => ({ "data-testid": `env-row-${e.key}` }), caption: "Environments" })
      : emptyState(
          "No environments yet",
          ctx.can("admin") ? button("Create an environment", create, { class: "link" }) : "ask an admin to create one (for example development and production)",
        ),
  );
}
