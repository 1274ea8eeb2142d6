// One segment: edit its name, description, included/excluded keys and rules (the segment-rules editor, which
// shares the flag rule editor's clauses); where it is used; its history.

import { ApiError, get, getAll, request } from "../api.js";
import { h, replace } from "../dom.js";
import { loadSegmentRulesEditor } from "../fallbacks.js";
import { historyView } from "../history.js";
import {
  button,
  confirmDialog,
  errorBanner,
  field,
  fillErrorBanner,
  infoBanner,
  pageHeader,
  placeErrors,
  textInput,
  timeAgo,
  toast,
} from "../ui.js";

const lines = (text) => [...new Set(text.split("\n").map((l) => l.trim()).filter(Boolean))];

export async function render(ctx) {
  const key = ctx.params.segment;
  ctx.title(`${key} · Segments`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/segments/${encodeURIComponent(key)}`;
  const [{ body: segment, etag }, usedBy, segments, segmentRulesEditor] = await Promise.all([
    get(base),
    get(`${base}/flags`).then(
      (r) => r.body,
      (error) => (error instanceof ApiError && error.status === 404 ? null : Promise.reject(error)),
    ),
    getAll(`/projects/${encodeURIComponent(ctx.project)}/segments`),
    loadSegmentRulesEditor(),
  ]);
  const canWrite = ctx.can("writer");
  const banner = errorBanner(null);

  const fields = {
    name: field("Name", textInput({ value: segment.name, maxlength: 256, readonly: !canWrite })),
    description: field("Description", h("textarea", { rows: 2, maxlength: 10000, value: segment.description, readonly: !canWrite })),
    included: field("Included keys", h("textarea", { rows: 8, class: "code", value: segment.included.join("\n"), readonly: !canWrite }), {
      hint: "One targeting key per line: always in the segment.",
    }),
    excluded: field("Excluded keys", h("textarea", { rows: 8, class: "code", value: segment.excluded.join("\n"), readonly: !canWrite }), {
      hint: "One per line: never in the segment, whatever the rules say.",
    }),
  };
  const rules = segmentRulesEditor({ segment: key, rules: segment.rules, segments, readOnly: !canWrite });
  const comment = field("Comment", textInput({ maxlength: 2000, placeholder: "Why this change (optional)" }));
  const save = button("Save", onSave, { class: "primary" });

  async function onSave() {
    for (const f of Object.values(fields)) f.clear();
    rules.clearErrors();
    banner.hidden = true;
    let ruleList;
    try {
      ruleList = rules.value();
    } catch (error) {
      fillErrorBanner(banner, error, "Check the rules");
      return;
    }
    const body = {
      name: fields.name.input.value.trim(),
      description: fields.description.input.value,
      included: lines(fields.included.input.value),
      excluded: lines(fields.excluded.input.value),
      rules: ruleList,
      comment: comment.input.value,
    };
    save.disabled = true;
    try {
      const { body: updated } = await request("PATCH", base, { body, ifMatch: etag });
      toast(`Saved ${key} (v${updated.version})`);
      ctx.reload();
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        fillErrorBanner(banner, error, "Someone else changed this segment while you were editing", []);
        banner.append(h("p", {}, "Copy your edits if you need them, then ", button("Reload", () => ctx.reload(), { class: "link" }), " to start from the current version."));
      } else {
        if (error instanceof ApiError) error.details = rules.showErrors(error.details);
        fillErrorBanner(banner, error, "The segment was not saved", placeErrors(error, fields));
      }
    } finally {
      save.disabled = false;
    }
  }

  async function remove() {
    const ok = await confirmDialog({
      title: `Delete segment ${key}?`,
      message: "Flags can no longer match it. A segment still used by a flag cannot be deleted.",
      typed: key,
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", base, { ifMatch: etag });
      toast(`Segment ${key} deleted`);
      ctx.navigate(ctx.href("p", ctx.project, "e", ctx.env, "segments"));
    } catch (error) {
      fillErrorBanner(banner, error, `Could not delete ${key}`);
    }
  }

  const whereUsed = h(
    "section",
    { class: "card", "aria-labelledby": "used-h" },
    h("h2", { id: "used-h" }, "Where used"),
    usedBy === null
      ? h("p", { class: "muted" }, "This server does not report where segments are used.")
      : usedBy.items.length || (usedBy.segments || []).length
        ? h(
            "ul",
            { class: "where-used", "data-testid": "where-used" },
            (usedBy.segments || []).map((other) =>
              h("li", {}, "segment ", h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "segments", other) }, other)),
            ),
            usedBy.items.map((u) =>
              h(
                "li",
                {},
                "flag ",
                h("a", { href: ctx.href("p", ctx.project, "e", u.environments.includes(ctx.env) || !u.environments.length ? ctx.env : u.environments[0], "flags", u.flag) }, u.flag),
                u.environments.length ? h("span", { class: "muted" }, ` in ${u.environments.join(", ")}`) : null,
              ),
            ),
          )
        : h("p", { class: "muted" }, "No flag or segment uses this segment."),
  );

  const historyHolder = h("div", {}, button("Show history", showHistory));
  async function showHistory() {
    replace(historyHolder, h("p", { class: "muted" }, "Loading versions…"));
    try {
      replace(historyHolder, await historyView({ base, label: `segment ${key}`, canWrite, currentVersion: segment.version, onRolledBack: () => ctx.reload() }));
    } catch (error) {
      replace(historyHolder, errorBanner(error, { title: "Could not load the history" }));
    }
  }

  return h(
    "section",
    { class: "page" },
    h("p", { class: "breadcrumb" }, h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "segments") }, "Segments"), " / ", key),
    pageHeader(h("span", { class: "flag-title" }, key), h("span", {}, `v${segment.version}, changed `, timeAgo(segment.updated_at)), canWrite ? button("Delete segment", remove, { class: "danger ghost" }) : null),
    banner,
    canWrite ? null : infoBanner("Read-only: your role (", ctx.session.role, ") cannot change segments."),
    h(
      "div",
      { class: "two-col wide-left" },
      h(
        "form",
        { class: "card form", novalidate: true, on: { submit: (e) => { e.preventDefault(); onSave(); } } },
        h("div", { class: "grid-2" }, fields.name.element, fields.description.element),
        h("div", { class: "grid-2" }, fields.included.element, fields.excluded.element),
        h("div", { class: "segment-rules", "data-testid": "segment-rules" }, rules.element),
        canWrite ? h("div", { class: "save-bar" }, comment.element, save) : null,
      ),
      whereUsed,
    ),
    h("section", { "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), historyHolder),
  );
}
