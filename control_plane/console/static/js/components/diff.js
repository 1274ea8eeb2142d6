// A readable diff of DiffOut `changes` ({op: add|remove|replace, path, old, value}). Every path
// segment and value is attacker-controlled text (flag keys, descriptions, variant values), so all of
// it reaches the page as text nodes; JSON values are pretty-printed, never interpreted.

import { h } from "../dom.js";

const P = "fy-diff";
const OP_LABELS = { add: "added", remove: "removed", replace: "changed" };

/** The segments of a JSON pointer, unescaped ("/variants/a~1b" -> ["variants", "a/b"]). */
export function pointerParts(path) {
  if (typeof path !== "string" || path === "") return [];
  return path
    .split("/")
    .slice(1)
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function pretty(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function breadcrumbs(path) {
  const parts = pointerParts(path);
  if (parts.length === 0) return h("span", { class: `${P}-crumbs` }, h("span", { class: `${P}-crumb` }, "(whole document)"));
  const items = [];
  parts.forEach((part, i) => {
    if (i) items.push(h("span", { class: `${P}-sep`, "aria-hidden": "true" }, " › "));
    const index = /^\d+$/.test(part);
    items.push(h("span", { class: [`${P}-crumb`, index && `${P}-index`] }, index ? `#${Number(part) + 1}` : part));
  });
  return h("span", { class: `${P}-crumbs`, title: path }, items);
}

/** diffView(changes) → an element listing each change; "No differences" when there are none. */
export function diffView(changes) {
  const list = Array.isArray(changes) ? changes : [];
  if (list.length === 0) {
    return h("div", { class: `${P} ${P}-empty` }, h("p", {}, "No differences."));
  }
  return h(
    "ol",
    { class: P, "aria-label": `${list.length} change${list.length === 1 ? "" : "s"}` },
    list.map((change) => {
      const op = OP_LABELS[change.op] ? change.op : "replace";
      const showOld = op === "remove" || op === "replace";
      const showNew = op === "add" || op === "replace";
      return h(
        "li",
        { class: [`${P}-change`, `${P}-${op}`] },
        h("div", { class: `${P}-head` }, h("span", { class: `${P}-op` }, OP_LABELS[op]), breadcrumbs(change.path)),
        h(
          "div",
          { class: `${P}-values` },
          showOld ? h("del", { class: `${P}-old` }, h("span", { class: `${P}-sign`, "aria-hidden": "true" }, "−"), h("pre", {}, pretty(change.old))) : null,
          showNew ? h("ins", { class: `${P}-new` }, h("span", { class: `${P}-sign`, "aria-hidden": "true" }, "+"), h("pre", {}, pretty(change.value))) : null,
        ),
      );
    }),
  );
}
