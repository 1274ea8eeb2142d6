// Flags of a project, seen from one environment: search, tag and type filters, on/off in every environment
// at a glance, last change, and this environment's evaluation usage with the stale badge. Archived flags
// are hidden unless the archived filter asks for them.

import { get, getAll } from "../api.js";
import { h, replace } from "../dom.js";
import { badge, button, emptyState, field, pageHeader, select, table, textInput, timeAgo } from "../ui.js";

export const FLAG_TYPES = ["boolean", "string", "integer", "float", "object"];

/** Filters survive moving between pages in one visit (not stored anywhere). */
const filters = { q: "", tag: "", type: "", archived: "false" };

export async function render(ctx) {
  ctx.title(`Flags · ${ctx.project}/${ctx.env}`);
  const p = encodeURIComponent(ctx.project);
  const [flags, usage] = await Promise.all([
    getAll(`/projects/${p}/flags`, { archived: "all" }),
    get(`/projects/${p}/environments/${encodeURIComponent(ctx.env)}/evaluations`).then(
      (r) => r.body,
      () => null, // usage is a hint; the list works without it
    ),
  ]);
  const usageByFlag = new Map(((usage && usage.flags) || []).map((u) => [u.key, u]));
  const tags = [...new Set(flags.flatMap((f) => f.tags))].sort();
  const newFlag = ctx.href("p", ctx.project, "e", ctx.env, "flags", "new");

  const header = pageHeader(
    "Flags",
    `Project ${ctx.project} · targeting shown for ${ctx.env}`,
    ctx.can("writer") ? button("New flag", () => ctx.navigate(newFlag), { class: "primary" }) : null,
  );
  if (!flags.length) {
    return h(
      "section",
      { class: "page" },
      header,
      emptyState("No flags yet", ctx.can("writer") ? h("a", { href: newFlag }, "Create flag") : "a writer or admin can create the first one"),
    );
  }

  const search = textInput({ type: "search", value: filters.q, placeholder: "Key, name or description" });
  const tagSelect = select([["", "All tags"], ...tags.map((t) => [t, t])], { value: filters.tag });
  const typeSelect = select([["", "All types"], ...FLAG_TYPES.map((t) => [t, t])], { value: filters.type });
  const archivedSelect = select(
    [
      ["false", "Live flags"],
      ["true", "Archived flags"],
      ["all", "Live and archived"],
    ],
    { value: filters.archived, "data-testid": "archived-filter" },
  );
  const results = h("div", { class: "results" });
  const count = h("p", { class: "muted count", role: "status", "aria-live": "polite" });

  function matches(flag) {
    const q = filters.q.toLowerCase();
    if (q && ![flag.key, flag.name, flag.description].some((s) => s.toLowerCase().includes(q))) return false;
    if (filters.tag && !flag.tags.includes(filters.tag)) return false;
    if (filters.type && flag.type !== filters.type) return false;
    if (filters.archived !== "all" && flag.archived !== (filters.archived === "true")) return false;
    return true;
  }

  const columns = [
    {
      label: "Flag",
      cell: (f) =>
        h(
          "div",
          { class: "flag-cell" },
          h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "flags", f.key), class: "flag-key" }, f.key),
          f.archived ? [" ", badge("Archived", "warn", { "data-testid": `archived-${f.key}` })] : null,
          f.name && f.name !== f.key ? h("div", { class: "muted" }, f.name) : null,
          f.owner ? h("div", { class: "muted small" }, `Owner: ${f.owner}`) : null,
          f.description ? h("div", { class: "muted small clamp" }, f.description) : null,
        ),
    },
    { label: "Type", cell: (f) => h("code", {}, f.type) },
    { label: "Tags", cell: (f) => (f.tags.length ? h("span", { class: "tags" }, f.tags.map((t) => badge(t, "tag"))) : h("span", { class: "muted" }, "—")) },
    ...ctx.environments.map((env) => ({
      label: env.key === ctx.env ? h("span", { class: "current-env" }, env.key) : env.key,
      class: env.key === ctx.env ? "state current" : "state",
      cell: (f) => {
        const on = Boolean(f.enabled[env.key]);
        return badge(on ? "On" : "Off", on ? "on" : "off", { "data-testid": `env-state-${env.key}`, title: `${on ? "On" : "Off"} in ${env.key}` });
      },
    })),
    { label: "Changed", cell: (f) => h("span", {}, timeAgo(f.updated_at), h("span", { class: "muted small" }, ` · v${f.version}`)) },
    {
      // The environment goes under the label (and the headers are short, the state cells narrow): the
      // one-line header widened the table past a 1280-pixel window once a project had three
      // environments, and usage and the stale badge were scrolled out of sight.
      label: h("span", {}, "Evaluations", h("span", { class: "th-sub" }, `in ${ctx.env}`)),
      class: "num",
      cell: (f) => {
        const u = usageByFlag.get(f.key);
        if (!usage) return h("span", { class: "muted" }, "—");
        if (!u) return h("span", { class: "muted" }, "—");
        const why = u.last_evaluated_at
          ? `Last evaluated ${new Date(u.last_evaluated_at).toLocaleString()}, more than ${usage.stale_after_days} days ago`
          : `Never evaluated in ${ctx.env}`;
        return h(
          "span",
          { title: u.last_evaluated_at ? `Last evaluated ${new Date(u.last_evaluated_at).toLocaleString()}` : null },
          u.evaluations.toLocaleString(),
          u.stale ? [" ", badge("Stale", "stale", { title: why, "data-testid": `stale-${f.key}` })] : null,
        );
      },
    },
  ];

  function update() {
    const shown = flags.filter(matches);
    replace(count, `${shown.length} of ${flags.length} flag${flags.length === 1 ? "" : "s"}`);
    replace(
      results,
      shown.length
        ? table(columns, shown, { rowAttrs: (f) => ({ "data-testid": `flag-row-${f.key}` }), caption: "Flags" })
        : emptyState("No flag matches these filters", h("button", { type: "button", class: "link", on: { click: clearFilters } }, "Clear filters")),
    );
  }
  function clearFilters() {
    filters.q = filters.tag = filters.type = "";
    filters.archived = "false";
    search.value = tagSelect.value = typeSelect.value = "";
    archivedSelect.value = "false";
    update();
    search.focus();
  }
  search.addEventListener("input", () => {
    filters.q = search.value.trim();
    update();
  });
  tagSelect.addEventListener("change", () => {
    filters.tag = tagSelect.value;
    update();
  });
  typeSelect.addEventListener("change", () => {
    filters.type = typeSelect.value;
    update();
  });
  archivedSelect.addEventListener("change", () => {
    filters.archived = archivedSelect.value;
    update();
  });
  update();

  return h(
    "section",
    { class: "page" },
    header,
    h(
      "div",
      { class: "filters", role: "search" },
      field("Search", search).element,
      field("Filter by tag", tagSelect).element,
      field("Filter by type", typeSelect).element,
      field("Archived", archivedSelect).element,
      count,
    ),
    results,
  );
}
