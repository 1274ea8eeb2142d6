// Shared pieces of the editor components: JSON pointers, a registry from pointers to fields, and the
// inline messages (server errors and live hints) tied to a field with aria-invalid/aria-describedby.

import { h, uid } from "../dom.js";

/** One JSON-pointer token for `part` (RFC 6901: "~" -> "~0", "/" -> "~1"). */
export function token(part) {
  return String(part).replace(/~/g, "~0").replace(/\//g, "~1");
}

/** A pointer from parts: pointer("rules", 0, "id") -> "/rules/0/id". */
export function pointer(...parts) {
  return parts.map((p) => "/" + token(p)).join("");
}

/** The parent of a pointer ("/a/b" -> "/a"; "/a" -> ""). */
export function parentPointer(path) {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "" : path.slice(0, at);
}

function describe(el, id, add) {
  const ids = (el.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
  const next = add ? [...new Set([...ids, id])] : ids.filter((x) => x !== id);
  if (next.length) el.setAttribute("aria-describedby", next.join(" "));
  else el.removeAttribute("aria-describedby");
}

function controlsOf(el) {
  if (el.matches && el.matches("input, select, textarea, button")) return [el];
  return el.querySelectorAll ? [...el.querySelectorAll("input, select, textarea")] : [];
}

/**
 * A map from JSON pointers (into the body a component's value() returns) to the field that holds
 * them: `control` gets aria-invalid, the message goes after `anchor` (default: the control).
 * Built while value() serializes, so array indices are those of the body actually sent.
 */
export class FieldRegistry {
  constructor() {
    this.fields = new Map();
  }

  add(path, control, anchor = control) {
    if (control && !this.fields.has(path)) this.fields.set(path, { control, anchor, section: false });
  }

  /** A group (a rule, a section) whose errors go after `heading`: its inputs are not all marked
   * invalid; the heading is focused instead and described by the message. */
  section(path, heading) {
    if (heading && !this.fields.has(path)) this.fields.set(path, { control: heading, anchor: heading, section: true });
  }

  /** The field registered for `path` or, walking up the pointer, for its closest ancestor. */
  closest(path) {
    let at = path;
    for (;;) {
      const field = this.fields.get(at);
      if (field) return field;
      if (at === "") return null;
      at = parentPointer(at);
    }
  }
}

/**
 * Server errors shown inline. place(registry, details) puts each detail next to its closest field and
 * returns the ones no field claims, and focuses the first field (in page order) it marked; clear()
 * removes them all.
 */
export class ErrorPlacer {
  constructor(cssPrefix) {
    this.prefix = cssPrefix;
    this.placed = [];
  }

  place(registry, details) {
    this.clear();
    const unplaced = [];
    let first = null;
    const byAnchor = new Map();
    for (const detail of details || []) {
      const path = typeof detail.path === "string" ? detail.path : "";
      const field = path === "" ? null : registry.closest(path);
      if (!field) {
        unplaced.push(detail);
        continue;
      }
      const message = String(detail.message ?? "invalid");
      let entry = byAnchor.get(field.anchor);
      if (!entry) {
        const id = uid(`${this.prefix}-err`);
        const el = h("p", { class: `${this.prefix}-error`, id });
        field.anchor.after(el);
        let controls;
        if (field.section) {
          controls = [field.control];
          if (!field.control.hasAttribute("tabindex")) field.control.setAttribute("tabindex", "-1");
          describe(field.control, id, true);
        } else {
          controls = controlsOf(field.control);
          for (const c of controls) {
            c.setAttribute("aria-invalid", "true");
            describe(c, id, true);
          }
        }
        entry = { el, id, controls };
        byAnchor.set(field.anchor, entry);
        this.placed.push(entry);
        const target = controls[0] || null;
        if (target && (!first || first.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_PRECEDING)) first = target;
      }
      entry.el.append(h("span", {}, message));
    }
    if (first && typeof first.focus === "function") first.focus();
    return unplaced;
  }

  clear() {
    for (const { el, id, controls } of this.placed) {
      el.remove();
      for (const c of controls) {
        describe(c, id, false);
        if (!c.dataset.hint) c.removeAttribute("aria-invalid");
      }
    }
    this.placed = [];
  }
}

/**
 * A live client-side hint under a field (not a number, not JSON, weights do not sum): set(message)
 * shows it and marks the control invalid, set(null) hides it.
 */
export function hint(control, cssPrefix) {
  const id = uid(`${cssPrefix}-hint`);
  const el = h("p", { class: `${cssPrefix}-hint`, id, hidden: true, "aria-live": "polite" });
  const controls = () => controlsOf(control);
  return {
    element: el,
    set(message) {
      if (message) {
        el.textContent = message;
        el.hidden = false;
        for (const c of controls()) {
          c.setAttribute("aria-invalid", "true");
          c.dataset.hint = "1";
          describe(c, id, true);
        }
      } else {
        el.textContent = "";
        el.hidden = true;
        for (const c of controls()) {
          delete c.dataset.hint;
          c.removeAttribute("aria-invalid");
          describe(c, id, false);
        }
      }
    },
  };
}

/** Variant and rule keys: what rule_engine.model.KEY_PATTERN accepts. */
export const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** A labelled control: <label for=id>text</label> control. Returns the wrapper. */
export function labelled(prefix, text, control, extraClass) {
  if (!control.id) control.id = uid(`${prefix}-f`);
  return h("div", { class: [`${prefix}-field`, extraClass] }, h("label", { for: control.id }, text), control);
}

/** A <select> of `options` ([{value, label}]) with `selected` chosen; unknown selected values are kept. */
export function select(options, selected, attrs = {}) {
  const known = options.some((o) => o.value === selected);
  const all = known || selected === undefined ? options : [...options, { value: selected, label: `${selected} (unknown)` }];
  return h(
    "select",
    attrs,
    all.map((o) => h("option", { value: o.value, selected: o.value === selected }, o.label)),
  );
}
