// Loaders for the shared editor components (components/rule-editor.js, components/diff.js), each with a
// plain fallback so every page works even where a component is missing: the rule editor falls back to
// the environment configuration as JSON (editable for writers), the segment-rules editor to the rules as
// JSON, the diff to a table of changes.

import { h, replace } from "./dom.js";
import { jsonBlock } from "./ui.js";

const CONFIG_FIELDS = ["enabled", "off_variant", "default_variant", "default_split", "rules", "prerequisites", "targeting"];

export async function loadRuleEditor() {
  try {
    const mod = await import("./components/rule-editor.js");
    if (typeof mod.ruleEditor === "function") return mod.ruleEditor;
  } catch {
    // fall through
  }
  return jsonConfigEditor;
}

/** The segment-rules editor, or the rules as a JSON textarea (read-only for readers). */
export async function loadSegmentRulesEditor() {
  try {
    const mod = await import("./components/rule-editor.js");
    if (typeof mod.segmentRulesEditor === "function") return mod.segmentRulesEditor;
  } catch {
    // fall through
  }
  return jsonSegmentRulesEditor;
}

export async function loadDiffView() {
  try {
    const mod = await import("./components/diff.js");
    if (typeof mod.diffView === "function") return mod.diffView;
  } catch {
    // fall through
  }
  return changesTable;
}

/** The environment configuration as JSON: read-only for readers, a textarea for writers. */
export function jsonConfigEditor({ config, readOnly }) {
  const current = {};
  for (const name of CONFIG_FIELDS) if (config && name in config) current[name] = config[name];
  const errors = h("ul", { class: "field-errors", role: "alert", hidden: true });
  if (readOnly) {
    return { element: h("div", { class: "json-editor" }, jsonBlock(current, { "data-testid": "env-config-json" })), value: () => current, showErrors: (d) => d, clearErrors() {} };
  }
  const textarea = h("textarea", { class: "code", rows: 18, spellcheck: "false", "aria-label": "Configuration (JSON)", value: JSON.stringify(current, null, 2) });
  const element = h(
    "div",
    { class: "json-editor" },
    h("p", { class: "hint" }, "The configuration as JSON (fields: ", CONFIG_FIELDS.join(", "), ")."),
    textarea,
    errors,
  );
  return {
    element,
    value() {
      let parsed;
      try {
        parsed = JSON.parse(textarea.value);
      } catch (error) {
        replace(errors, h("li", {}, `Not valid JSON: ${error.message}`));
        errors.hidden = false;
        throw new Error("The configuration is not valid JSON.");
      }
      return parsed;
    },
    showErrors(details) {
      replace(errors, details.map((d) => h("li", {}, h("code", {}, d.path || "/"), ": ", d.message)));
      errors.hidden = !details.length;
      return [];
    },
    clearErrors() {
      replace(errors);
      errors.hidden = true;
    },
  };
}

/** A segment's rules as JSON: the same contract as segmentRulesEditor; errors listed under the textarea. */
export function jsonSegmentRulesEditor({ rules, readOnly }) {
  const errors = h("ul", { class: "field-errors", role: "alert", hidden: true });
  const textarea = h("textarea", { class: "code", rows: 8, spellcheck: "false", readonly: readOnly, "aria-label": "Rules (JSON)", value: JSON.stringify(rules || [], null, 2) });
  const showErrors = (details) => {
    replace(errors, details.map((d) => h("li", {}, h("code", {}, d.path || "/"), ": ", d.message)));
    errors.hidden = !details.length;
    return [];
  };
  return {
    element: h("div", { class: "json-editor" }, h("p", { class: "hint" }, "A list of rules; a context matching any rule is in the segment."), textarea, errors),
    value() {
      try {
        return JSON.parse(textarea.value || "[]");
      } catch (error) {
        showErrors([{ path: "/rules", message: `Not valid JSON: ${error.message}` }]);
        throw new Error("The rules are not valid JSON.");
      }
    },
    showErrors,
    clearErrors: () => showErrors([]),
    clientErrors: () => [],
  };
}

function show(value) {
  if (value === undefined) return h("span", { class: "muted" }, "—");
  return h("code", { class: "value" }, JSON.stringify(value, null, 1));
}

/** A DiffOut `changes` list as a table: operation, JSON pointer, before, after. */
export function changesTable(changes) {
  if (!changes || !changes.length) return h("p", { class: "muted" }, "No differences.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "diff-table" },
      h("thead", {}, h("tr", {}, ["Change", "Where", "Before", "After"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        changes.map((c) =>
          h(
            "tr",
            { class: `op-${c.op}` },
            h("td", {}, c.op),
            h("td", {}, h("code", {}, c.path || "/")),
            h("td", {}, c.op === "add" ? show(undefined) : show(c.old)),
            h("td", {}, c.op === "remove" ? show(undefined) : show(c.value)),
          ),
        ),
      ),
    ),
  );
}
