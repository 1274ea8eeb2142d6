// A flag's history: versions, compare any two, roll back.

import { get } from "../api.js";
import { h } from "../dom.js";
import { historyView } from "../history.js";
import { pageHeader } from "../ui.js";

export async function render(ctx) {
  const key = ctx.params.flag;
  ctx.title(`History · ${key}`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/flags/${encodeURIComponent(key)}`;
  const { body: flag } = await get(base);
  const view = await historyView({
    base,
    label: `flag ${key}`,
    canWrite: ctx.can("writer"),
    currentVersion: flag.version,
    onRolledBack: () => ctx.reload(),
  });
  const flagPage = ctx.href("p", ctx.project, "e", ctx.env, "flags", key);
  return h(
    "section",
    { class: "page" },
    h("p", { class: "breadcrumb" }, h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "flags") }, "Flags"), " / ", h("a", { href: flagPage }, key), " / History"),
    pageHeader(`History of ${key}`, `Version ${flag.version} is current. Each change to the definition or any environment is a version.`),
    view,
  );
}
