// Segments of a project: reusable audiences (included/excluded keys and rules).

import { getAll, request } from "../api.js";
import { h } from "../dom.js";
import { button, emptyState, formDialog, pageHeader, table, timeAgo, toast } from "../ui.js";
import { keyNameFields, values } from "./projects.js";

export async function render(ctx) {
  ctx.title(`Segments · ${ctx.project}`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/segments`;
  const segments = await getAll(base);
  const canWrite = ctx.can("writer");

  async function create() {
    const fields = keyNameFields();
    const created = await formDialog({
      title: "New segment",
      fields,
      submitLabel: "Create segment",
      submit: async () => (await request("POST", base, { body: values(fields) })).body,
    });
    if (created) {
      toast(`Segment ${created.key} created`);
      ctx.navigate(ctx.href("p", ctx.project, "e", ctx.env, "segments", created.key));
    }
  }

  const columns = [
    {
      label: "Segment",
      cell: (s) =>
        h(
          "div",
          {},
          h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "segments", s.key), class: "flag-key" }, s.key),
          s.name !== s.key ? h("div", { class: "muted" }, s.name) : null,
          s.description ? h("div", { class: "muted small clamp" }, s.description) : null,
        ),
    },
    { label: "Included", class: "num", cell: (s) => String(s.included.length) },
    { label: "Excluded", class: "num", cell: (s) => String(s.excluded.length) },
    { label: "Rules", class: "num", cell: (s) => String(s.rules.length) },
    { label: "Last changed", cell: (s) => h("span", {}, timeAgo(s.updated_at), h("span", { class: "muted small" }, ` · v${s.version}`)) },
  ];
  return h(
    "section",
    { class: "page" },
    pageHeader("Segments", `Project ${ctx.project}: audiences that flag rules can match in any environment.`, canWrite ? button("New segment", create, { class: "primary" }) : null),
    segments.length
      ? table(columns, segments, { rowAttrs: (s) => ({ "data-testid": `segment-row-${s.key}` }), caption: "Segments" })
      : emptyState("No segments yet", canWrite ? button("Create a segment", create, { class: "link" }) : "a writer can create one (for example beta testers)"),
  );
}
