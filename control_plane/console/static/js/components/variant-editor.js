// The variants of a flag: a name and a typed value each (boolean, string, integer, float, object).
// value() returns the `variants` dict of a flag create/update body. A value that does not fit the
// type is sent as typed, so the server refuses it at /variants/<name> and showErrors() puts the
// message there; the live hint says so first.

import { h, replace } from "../dom.js";
import { ErrorPlacer, FieldRegistry, KEY_RE, hint, pointer } from "./editor-fields.js";

const P = "fy-ve";
/** rule_engine.limits.MAX_VARIANTS */
export const MAX_VARIANTS = 100;

const INTEGER_RE = /^[-+]?\d+$/;
const FLOAT_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
const INT64_MAX = 2n ** 63n - 1n;

function textOf(type, value) {
  if (type === "object") return JSON.stringify(value ?? {}, null, 2);
  if (type === "boolean") return value === true ? "true" : "false";
  if (value === undefined || value === null) return "";
  return typeof value === "string" ? value : type === "string" ? JSON.stringify(value) : String(value);
}

/** [parsed value, problem or null] for the text of a value of `type`. */
function parse(type, text) {
  if (type === "boolean") return [text === "true", null];
  if (type === "string") return [text, null];
  if (type === "integer") {
    const t = text.trim();
    if (!INTEGER_RE.test(t)) return [text, "Not a whole number."];
    const big = BigInt(t);
    if (big > INT64_MAX || big < -INT64_MAX - 1n) return [text, "Outside the 64-bit integer range."];
    if (!Number.isSafeInteger(Number(big))) return [text, "Beyond ±2^53: a browser cannot send it exactly; use the API."];
    return [Number(big), null];
  }
  if (type === "float") {
    const t = text.trim();
    const n = Number(t);
    if (!FLOAT_RE.test(t) || !Number.isFinite(n)) return [text, "Not a number."];
    return [n, null];
  }
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== "object") return [text, "An object flag's values are JSON objects or arrays."];
    return [v, null];
  } catch (e) {
    return [text, `Not valid JSON: ${e.message}`];
  }
}

/** Default variants of a new flag of `type`. */
export function defaultVariants(type) {
  return {
    boolean: { on: true, off: false },
    string: { a: "a", b: "b" },
    integer: { one: 1, two: 2 },
    float: { low: 0.1, high: 0.9 },
    object: { default: {} },
  }[type] || { on: true, off: false };
}

/**
 * variantEditor({type, variants, readOnly}) → {element, value(), showErrors(details), clearErrors(),
 * setType(type), clientErrors()}. Paths in showErrors are those of a flag body: /variants/<name>.
 */
export function variantEditor({ type, variants, readOnly = false }) {
  let flagType = type || "boolean";
  let rows = Object.entries(variants || defaultVariants(flagType)).map(([name, v]) => ({ name, text: textOf(flagType, v) }));
  const errors = new ErrorPlacer(P);
  const list = h("div", { class: `${P}-list` });
  const heading = h("h3", { class: `${P}-heading` }, "Variants");
  const element = h("div", { class: [P, readOnly && `${P}-readonly`] }, heading, list);
  const problems = new Map();
  let counter = 0;

  function note(key, message, hinted) {
    if (message) problems.set(key, message);
    else problems.delete(key);
    hinted.set(message);
  }

  function duplicates() {
    const seen = new Map();
    for (const row of rows) seen.set(row.name, (seen.get(row.name) || 0) + 1);
    return seen;
  }

  function render(focusIndex) {
    errors.clear();
    problems.clear();
    replace(
      list,
      h("div", { class: `${P}-row ${P}-head`, "aria-hidden": "true" }, h("span", { class: `${P}-name` }, "Name"), h("span", { class: `${P}-value` }, `Value (${flagType})`)),
      rows.map((row, i) => {
        const nameInput = h("input", {
          type: "text",
          class: `${P}-name`,
          value: row.name,
          spellcheck: "false",
          disabled: readOnly,
          "aria-label": `Variant ${i + 1} name`,
          on: { input: () => ((row.name = nameInput.value), checkName()) },
        });
        const nameHint = hint(nameInput, P);
        const checkName = () => {
          const counts = duplicates();
          let message = null;
          if (!KEY_RE.test(row.name)) message = "1-128 of A-Z a-z 0-9 _ . - , starting with a letter or digit.";
          else if (counts.get(row.name) > 1) message = "Two variants share this name.";
          note(`n${i}`, message, nameHint);
        };
        let valueInput;
        if (flagType === "boolean") {
          valueInput = h(
            "select",
            { disabled: readOnly, "aria-label": `Variant ${i + 1} value`, on: { change: () => (row.text = valueInput.value) } },
            h("option", { value: "true", selected: row.text === "true" }, "true"),
            h("option", { value: "false", selected: row.text !== "true" }, "false"),
          );
        } else if (flagType === "object") {
          valueInput = h("textarea", {
            class: `${P}-json`,
            rows: "4",
            spellcheck: "false",
            value: row.text,
            disabled: readOnly,
            "aria-label": `Variant ${i + 1} value (JSON)`,
            on: { input: () => ((row.text = valueInput.value), checkValue()) },
          });
        } else {
          valueInput = h("input", {
            type: "text",
            inputmode: flagType === "integer" ? "numeric" : flagType === "float" ? "decimal" : null,
            value: row.text,
            spellcheck: flagType === "string" ? null : "false",
            disabled: readOnly,
            "aria-label": `Variant ${i + 1} value`,
            on: { input: () => ((row.text = valueInput.value), checkValue()) },
          });
        }
        const valueHint = hint(valueInput, P);
        const checkValue = () => note(`v${i}`, parse(flagType, row.text)[1], valueHint);
        checkName();
        checkValue();
        const remove =
          readOnly || rows.length <= 1
            ? null
            : h("button", { type: "button", class: `${P}-btn ${P}-icon`, "aria-label": `Remove variant ${row.name || i + 1}`, on: { click: () => (rows.splice(i, 1), render()) } }, "✕");
        const el = h(
          "div",
          { class: `${P}-row` },
          h("div", { class: `${P}-cell` }, nameInput, nameHint.element),
          h("div", { class: `${P}-cell ${P}-value` }, valueInput, valueHint.element),
          remove,
        );
        row.els = { el, nameInput, valueInput };
        return el;
      }),
      readOnly || rows.length >= MAX_VARIANTS
        ? null
        : h("button", { type: "button", class: `${P}-btn`, on: { click: add } }, "+ Add variant"),
    );
    if (focusIndex !== undefined) rows[focusIndex]?.els.nameInput.focus();
  }

  function add() {
    const taken = new Set(rows.map((r) => r.name));
    let name;
    do {
      counter += 1;
      name = `variant-${counter}`;
    } while (taken.has(name));
    const blank = { boolean: "false", string: "", integer: "0", float: "0", object: "{}" }[flagType];
    rows.push({ name, text: blank });
    render(rows.length - 1);
  }

  function serialize(reg = new FieldRegistry()) {
    reg.add("/variants", list, heading);
    const out = {};
    for (const row of rows) {
      const [value] = parse(flagType, row.text);
      if (!(row.name in out)) {
        out[row.name] = value;
        if (row.els) reg.add(pointer("variants", row.name), row.els.valueInput);
      }
    }
    return { body: out, reg };
  }

  render();
  return {
    element,
    value() {
      return serialize().body;
    },
    showErrors(details) {
      return errors.place(serialize().reg, details);
    },
    clearErrors() {
      errors.clear();
    },
    /** Change the flag type: values convert where they can (1 → "1"), else start blank. */
    setType(next) {
      if (next === flagType) return;
      rows = rows.map((row) => {
        const [old, bad] = parse(flagType, row.text);
        let text = bad ? row.text : textOf(next, old);
        if (next === "boolean") text = old === true || row.text === "true" ? "true" : "false";
        else if (next === "object" && (bad || typeof old !== "object")) text = "{}";
        else if (next !== "string" && typeof old === "object") text = "";
        return { name: row.name, text };
      });
      flagType = next;
      render();
    },
    clientErrors() {
      return [...problems.entries()].map(([key, message]) => ({ key, message }));
    },
  };
}
