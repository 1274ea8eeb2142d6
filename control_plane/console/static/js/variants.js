// Variants with typed value editors (boolean, string, number, JSON): the console's own editor, used until
// (or where) the shared components/variant-editor.js is not available. Interface as that component's:
// variantEditor({type, variants}) → {element, value(), showErrors(details)}.

import { h, uid } from "./dom.js";
import { textInput } from "./ui.js";

export const DEFAULT_VARIANTS = {
  boolean: { on: true, off: false },
  string: { control: "control", treatment: "treatment" },
  integer: { low: 0, high: 1 },
  float: { low: 0, high: 1.5 },
  object: { default: {} },
};

/** Loads the shared component if it is there; otherwise this module's editor. */
export async function loadVariantEditor() {
  try {
    const mod = await import("./components/variant-editor.js");
    if (typeof mod.variantEditor === "function") return mod.variantEditor;
  } catch {
    // not shipped yet: the basic editor below does the job
  }
  return basicVariantEditor;
}

function valueInput(type, value, label) {
  if (type === "boolean") {
    const sel = h("select", { "aria-label": label }, h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    sel.value = value === false ? "false" : "true";
    return sel;
  }
  if (type === "integer" || type === "float") {
    return h("input", { type: "number", step: type === "integer" ? "1" : "any", value: value === undefined ? "" : String(value), "aria-label": label });
  }
  if (type === "object") {
    return h("textarea", { rows: 3, class: "code", spellcheck: "false", "aria-label": label, value: JSON.stringify(value === undefined ? {} : value, null, 2) });
  }
  return textInput({ value: value === undefined ? "" : String(value), "aria-label": label });
}

function parseValue(type, input) {
  const raw = input.value;
  if (type === "boolean") return raw === "true";
  if (type === "integer") {
    if (raw.trim() === "" || !/^-?\d+$/.test(raw.trim())) throw new Error("enter a whole number");
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) throw new Error("this integer is too large for the browser to carry exactly");
    return n;
  }
  if (type === "float") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) throw new Error("enter a number");
    return n;
  }
  if (type === "object") {
    try {
      return JSON.parse(raw);
    } catch (error) {
      throw new Error(`not valid JSON: ${error.message}`);
    }
  }
  return raw;
}

export function basicVariantEditor({ type, variants }) {
  const rows = [];
  const list = h("div", { class: "variant-rows" });
  const banner = h("p", { class: "field-error", role: "alert", hidden: true });
  const element = h("fieldset", { class: "variants" }, h("legend", {}, "Variants"), list, banner);

  function addRow(name, value) {
    const index = rows.length + 1;
    const nameInput = textInput({ value: name, "aria-label": `Variant ${index} name`, maxlength: 128 });
    const input = valueInput(type, value, `Variant ${index} value`);
    const error = h("p", { class: "field-error", role: "alert", hidden: true, id: uid("err") });
    nameInput.setAttribute("aria-describedby", error.id);
    input.setAttribute("aria-describedby", error.id);
    const row = { nameInput, input, error, element: null };
    const removeButton = h("button", { type: "button", class: "ghost", "aria-label": `Remove variant ${index}` }, "Remove");
    removeButton.addEventListener("click", () => {
      rows.splice(rows.indexOf(row), 1);
      row.element.remove();
    });
    row.element = h("div", { class: ["variant-row", type === "object" && "stacked"] }, nameInput, input, removeButton, error);
    rows.push(row);
    list.append(row.element);
    return row;
  }

  for (const [name, value] of Object.entries(variants || {})) addRow(name, value);
  const add = h("button", { type: "button", class: "ghost" }, "Add variant");
  add.addEventListener("click", () => addRow("", type === "boolean" ? true : type === "object" ? {} : "").nameInput.focus());
  if (type !== "boolean") element.append(add);

  function clear() {
    banner.hidden = true;
    for (const row of rows) {
      row.error.hidden = true;
      row.nameInput.removeAttribute("aria-invalid");
      row.input.removeAttribute("aria-invalid");
    }
  }

  function mark(row, message, which = "input") {
    row.error.textContent = message;
    row.error.hidden = false;
    row[which === "name" ? "nameInput" : "input"].setAttribute("aria-invalid", "true");
  }

  return {
    element,
    /** The variants object; throws (after marking the fields) when a value does not parse. */
    value() {
      clear();
      const out = {};
      let bad = false;
      for (const row of rows) {
        const name = row.nameInput.value.trim();
        if (!name) {
          mark(row, "Give the variant a name", "name");
          bad = true;
          continue;
        }
        if (Object.hasOwn(out, name)) {
          mark(row, `Another variant is already called ${name}`, "name");
          bad = true;
          continue;
        }
        try {
          out[name] = parseValue(type, row.input);
        } catch (error) {
          mark(row, error.message);
          bad = true;
        }
      }
      if (!rows.length) {
        banner.textContent = "Add at least one variant";
        banner.hidden = false;
        bad = true;
      }
      if (bad) throw new Error("Some variants need attention (marked above).");
      return out;
    },
    /** Details with paths under /variants/<name> go to that row; returns the others. */
    showErrors(details) {
      const rest = [];
      for (const detail of details) {
        const match = /^\/variants(?:\/([^/]+))?/.exec(detail.path || "");
        if (!match) {
          rest.push(detail);
          continue;
        }
        const name = match[1] && match[1].replace(/~1/g, "/").replace(/~0/g, "~");
        const row = name ? rows.find((r) => r.nameInput.value.trim() === name) : null;
        if (row) mark(row, detail.message);
        else {
          banner.textContent = detail.message;
          banner.hidden = false;
        }
      }
      return rest;
    },
  };
}

