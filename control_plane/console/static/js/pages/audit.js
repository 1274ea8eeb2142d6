// The project's audit log: who (acting key), what (resource, action, environment), when (time range),
// with each entry's diff. Filters map to the API's query parameters.

import { get } from "../api.js";
import { h, replace } from "../dom.js";
import { loadDiffView } from "../fallbacks.js";
import { button, emptyState, errorBanner, field, fillErrorBanner, pageHeader, select, textInput, timeAgo } from "../ui.js";

const RESOURCE_TYPES = ["project", "environment", "flag", "segment", "api_key", "sdk_key", "scheduled_change"];
const ACTIONS = ["created", "updated", "deleted", "toggled", "rolled_back", "imported", "rotated", "revoked", "scheduled", "rescheduled", "cancelled", "applied", "failed"];

/** Filters survive moving between pages in one visit. */
const saved = { actor_key_id: "", resource_type: "", resource_key: "", action: "", environment: "", since: "", until: "" };

function isoFromLocal(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

export async function render(ctx) {
  ctx.title(`Audit log · ${ctx.project}`);
  const diffView = await loadDiffView();
  const path = `/projects/${encodeURIComponent(ctx.project)}/audit`;

  const actionList = h("datalist", { id: "audit-actions" }, ACTIONS.map((a) => h("option", { value: a })));
  const fields = {
    actor_key_id: field("Actor key id", h("input", { type: "number", min: "1", step: "1", value: saved.actor_key_id, inputmode: "numeric" })),
    resource_type: field("Resource", select([["", "Any resource"], ...RESOURCE_TYPES.map((t) => [t, t.replace("_", " ")])], { value: saved.resource_type })),
    resource_key: field("Resource key", textInput({ value: saved.resource_key, maxlength: 256 })),
    action: field("Action", textInput({ value: saved.action, list: "audit-actions", maxlength: 256 })),
    environment: field("Environment", select([["", "Any"], ...ctx.environments.map((e) => [e.key, e.key])], { value: saved.environment })),
    since: field("From", h("input", { type: "datetime-local", value: saved.since })),
    until: field("To", h("input", { type: "datetime-local", value: saved.until })),
  };
  const banner = errorBanner(null);
  const results = h("div", { class: "results", "aria-live": "polite" });
  const more = button("Load more", () => load(true), { hidden: true });
  let cursor = null;
  let rows = [];

  function query() {
    return {
      actor_key_id: fields.actor_key_id.input.value || null,
      resource_type: fields.resource_type.input.value || null,
      resource_key: fields.resource_key.input.value.trim() || null,
      action: fields.action.input.value.trim() || null,
      environment: fields.environment.input.value || null,
      since: isoFromLocal(fields.since.input.value),
      until: isoFromLocal(fields.until.input.value),
    };
  }

  async function load(append = false) {
    banner.hidden = true;
    for (const f of Object.values(fields)) f.clear();
    for (const name of Object.keys(saved)) saved[name] = fields[name].input.value;
    more.disabled = true;
    try {
      const { body } = await get(path, { ...query(), limit: 50, cursor: append ? cursor : null });
      rows = append ? [...rows, ...body.items] : body.items;
      cursor = body.next_cursor;
      more.hidden = !cursor;
      renderRows();
    } catch (error) {
      const rest = [];
      for (const d of error.details || []) {
        const name = (d.path || "").split("/").pop();
        if (fields[name]) fields[name].error(d.message);
        else rest.push(d);
      }
      fillErrorBanner(banner, error, "Could not load the audit log", rest);
    } finally {
      more.disabled = false;
    }
  }

  function renderRows() {
    if (!rows.length) {
      replace(results, emptyState("No audit entries match these filters", button("Clear filters", clear, { class: "link" })));
      return;
    }
    replace(
      results,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "audit" },
          h("caption", { class: "visually-hidden" }, "Audit entries"),
          h("thead", {}, h("tr", {}, ["When", "Who", "Resource", "Environment", "Action", "Version", "Comment", "Changes"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            rows.map((entry) =>
              h(
                "tr",
                { "data-testid": `audit-row-${entry.id}` },
                h("td", {}, timeAgo(entry.created_at)),
                h(
                  "td",
                  {},
                  entry.actor_key_id === null
                    ? h("span", { class: "muted" }, "system")
                    : h("span", {}, h("code", {}, entry.actor_key_prefix || "?"), h("span", { class: "muted small" }, ` #${entry.actor_key_id}`)),
                ),
                h("td", {}, h("span", { class: "muted small" }, entry.resource_type.replace("_", " "), " "), h("code", {}, entry.resource_key)),
                h("td", {}, entry.environment || h("span", { class: "muted" }, "—")),
                h("td", {}, entry.action),
                h("td", { class: "num" }, entry.version === null ? "—" : `v${entry.version}`),
                h("td", { class: "prewrap" }, entry.comment || h("span", { class: "muted" }, "—")),
                h(
                  "td",
                  {},
                  entry.diff.length
                    ? h("details", {}, h("summary", {}, `${entry.diff.length} change${entry.diff.length === 1 ? "" : "s"}`), diffView(entry.diff))
                    : h("span", { class: "muted" }, "—"),
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function clear() {
    for (const f of Object.values(fields)) f.input.value = "";
    load();
  }

  const form = h(
    "form",
    { class: "filters audit-filters", role: "search", "aria-label": "Audit filters", novalidate: true },
    Object.values(fields).map((f) => f.element),
    actionList,
    h("div", { class: "filter-actions" }, h("button", { type: "submit", class: "primary" }, "Apply filters"), button("Clear", clear)),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  await load();
  return h("section", { class: "page" }, pageHeader("Audit log", `Project ${ctx.project}: every change, newest first.`), form, banner, results, more);
}
