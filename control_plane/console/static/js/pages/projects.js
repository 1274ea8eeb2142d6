// Projects: list, create (global admin), delete (admin, typed confirmation).

import { request } from "../api.js";
import { h } from "../dom.js";
import {
  button,
  confirmDialog,
  emptyState,
  errorBanner,
  field,
  fillErrorBanner,
  formDialog,
  pageHeader,
  table,
  textInput,
  timeAgo,
  toast,
} from "../ui.js";

export function keyNameFields() {
  return {
    key: field("Key", textInput({ required: true, maxlength: 128, autofocus: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]*" }), {
      hint: "Letters, digits, _ . - (starts with a letter or digit). It cannot change later.",
    }),
    name: field("Name", textInput({ required: true, maxlength: 256 })),
    description: field("Description", h("textarea", { rows: 3, maxlength: 10000 })),
  };
}

export function values(fields) {
  const out = {};
  for (const [name, f] of Object.entries(fields)) out[name] = f.input.value.trim();
  return out;
}

export async function render(ctx) {
  ctx.title("Projects");
  const projects = ctx.projects;
  const banner = errorBanner(null);

  async function create() {
    const fields = keyNameFields();
    const created = await formDialog({
      title: "New project",
      fields,
      submitLabel: "Create project",
      submit: async () => (await request("POST", "/projects", { body: values(fields) })).body,
    });
    if (created) {
      toast(`Project ${created.key} created`);
      ctx.invalidate(ctx.href("p", created.key, "environments"));
    }
  }

  async function remove(project) {
    const ok = await confirmDialog({
      title: `Delete project ${project.key}?`,
      message: h(
        "p",
        {},
        "This deletes the project with every environment, flag, segment, SDK key and version in it. Data planes stop serving its flags. This cannot be undone.",
      ),
      typed: project.key,
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", `/projects/${encodeURIComponent(project.key)}`, { ifMatch: `"${project.revision}"` });
      toast(`Project ${project.key} deleted`);
      ctx.invalidate();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not delete ${project.key}`);
    }
  }

  const actions = ctx.isGlobalAdmin ? [button("New project", create, { class: "primary" })] : [];
  const columns = [
    { label: "Project", cell: (p) => h("a", { href: ctx.href("p", p.key) }, h("strong", {}, p.name), " ", h("code", { class: "muted" }, p.key)) },
    { label: "Description", cell: (p) => p.description || h("span", { class: "muted" }, "—") },
    { label: "Updated", cell: (p) => timeAgo(p.updated_at) },
  ];
  if (ctx.can("admin")) {
    columns.push({ label: h("span", { class: "visually-hidden" }, "Actions"), class: "actions-cell", cell: (p) => button("Delete", () => remove(p), { class: "danger ghost", "aria-label": `Delete project ${p.key}` }) });
  }
  return h(
    "section",
    { class: "page" },
    pageHeader("Projects", "Each project holds its environments, flags and segments.", ...actions),
    banner,
    projects.length
      ? table(columns, projects, { rowAttrs: (p) => ({ "data-testid": `project-row-${p.key}` }), caption: "Projects" })
      : emptyState(
          "No projects yet",
          ctx.isGlobalAdmin ? button("Create a project", create, { class: "link" }) : "ask a global admin to create one",
        ),
  );
}
