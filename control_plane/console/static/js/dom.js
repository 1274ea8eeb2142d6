// The only way the console builds DOM: elements and text nodes, never HTML strings.
// Every value from the API (flag keys, descriptions, audit metadata) is attacker-controlled, so it
// must reach the page as a text node; the CSP also forbids inline scripts, handlers and styles.

/**
 * h("button", {class: "primary", on: {click: save}, "aria-label": "Save"}, "Save")
 *
 * attrs: `class` (string or array), `on` ({event: handler}), `dataset` ({name: value}),
 * `value`/`checked`/`disabled`/`selected`/`hidden` (set as properties), anything else as an
 * attribute (null/undefined/false skip it). Children: nodes, strings/numbers (text), arrays,
 * null/undefined/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (name === "dataset") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (["value", "checked", "disabled", "selected", "hidden", "indeterminate"].includes(name)) {
      el[name] = value;
    } else if (name.startsWith("on")) {
      throw new Error(`use {on: {${name.slice(2)}: fn}}, not ${name}`);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (nodes, text, arrays, skipping null/undefined/false) to a node. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace everything inside `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A stable id for label/for and aria-describedby pairs. */
let counter = 0;
export function uid(prefix = "fy") {
  counter += 1;
  return `${prefix}-${counter}`;
}
