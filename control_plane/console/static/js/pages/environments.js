// A project's environments: list, create, delete and set the approvals a change needs (admin).

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
