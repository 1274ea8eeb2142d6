// Shared widgets of the console: fields, dialogs, banners, tables, empty and loading states, times.
// Everything is built with h(): values from the API always become text nodes.

import { ApiError } from "./api.js";
import { h, replace, uid } from "./dom.js";

/** Environment keys/names that deserve a second thought before a toggle. */
const PRODUCTION_LIKE = /(^|[^a-z])(prod|production|live|prd)([^a-z]|$)/i;

/** "Production" for {key: "production", name: "Production"}; "Payments (pay)" when they differ. */
export function displayName(item) {
  return item.name && item.name.toLowerCase() !== item.key.toLowerCase() ? `${item.name} (${item.key})` : item.name || item.key;
}

export function isProductionLike(env) {
  if (!env) return false;
  return PRODUCTION_LIKE.test(env.key || "") || PRODUCTION_LIKE.test(env.name || "");
}

/**
 * A labelled form field: {element, input, error(message), clear()}.
 * `input` is an <input>, <select> or <textarea> built by the caller (its id is set here).
 */
export function field(label, input, { hint, wide } = {}) {
  const id = input.id || uid("field");
  input.id = id;
  const hintId = hint ? uid("hint") : null;
  const errorId = uid("err");
  const errorEl = h("p", { class: "field-error", id: errorId, hidden: true, role: "alert" });
  const described = [hintId, errorId].filter(Boolean).join(" ");
  input.setAttribute("aria-describedby", described);
  const element = h(
    "div",
    { class: ["field", wide && "wide"] },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    errorEl,
  );
  return {
    element,
    input,
    /** Show `message` at the field; several calls before clear() list every message. */
    error(message) {
      errorEl.textContent = errorEl.hidden ? message : `${errorEl.textContent}\n${message}`;
      errorEl.hidden = false;
      input.setAttribute("aria-invalid", "true");
    },
    clear() {
      errorEl.textContent = "";
      errorEl.hidden = true;
      input.removeAttribute("aria-invalid");
    },
  };
}

export const textInput = (attrs = {}) => h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...attrs });

export function select(options, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h("option", { value, selected: attrs.value === value }, label);
    }),
  );
}

/** A banner that says what went wrong: the error's message and each detail (path: message). */
export function errorBanner(error, { title } = {}) {
  const banner = h("div", { class: "banner error", role: "alert" });
  if (!error) {
    banner.hidden = true;
    return banner;
  }
  return fillErrorBanner(banner, error, title);
}

export function fillErrorBanner(banner, error, title, details) {
  banner.hidden = false;
  const message = error instanceof ApiError ? error.message : String((error && error.message) || error);
  const list = details !== undefined ? details : error instanceof ApiError ? error.details : [];
  const status = error instanceof ApiError ? ` (${error.status} ${error.code})` : "";
  replace(
    banner,
    h("strong", {}, title || "That did not work"),
    h("p", {}, message + status),
    list.length
      ? h(
          "ul",
          {},
          list.map((d) => h("li", {}, d.path ? h("code", {}, d.path) : null, d.path ? ": " : null, d.message)),
        )
      : null,
  );
  return banner;
}

export function infoBanner(...children) {
  return h("div", { class: "banner info", role: "status" }, ...children);
}

export function loading(text = "Loading…") {
  return h("p", { class: "loading", role: "status", "aria-live": "polite" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

/** "No flags yet — Create flag": what is missing and what to do next. */
export function emptyState(message, ...actions) {
  return h("div", { class: "empty" }, h("p", {}, message, actions.length ? " — " : null, ...actions));
}

export function badge(text, kind = "", attrs = {}) {
  return h("span", { class: ["badge", kind], ...attrs }, text);
}

export function pageHeader(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-header" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", { class: "subtitle" }, subtitle) : null),
    h("div", { class: "actions" }, ...actions),
  );
}

/**
 * The "Show more" of a paged list: null when there is no next page; otherwise a button that loads it
 * (`load(cursor)` → {items, next_cursor}) and hands it to `append`, or says in `banner` why it could not.
 */
export function showMore(cursor, load, banner, append) {
  if (!cursor) return null;
  return h(
    "p",
    {},
    button("Show more", async (e) => {
      e.target.disabled = true;
      try {
        append(await load(cursor));
      } catch (error) {
        fillErrorBanner(banner, error, "Could not load more");
        e.target.disabled = false;
      }
    }),
  );
}

export function button(label, onClick, attrs = {}) {
  return h("button", { type: "button", ...attrs, on: { click: onClick } }, label);
}

/** A table: columns [{label, cell(row) → node|text, class}], rows, rowAttrs(row). */
export function table(columns, rows, { rowAttrs, caption } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.class }, c.cell(row))))),
      ),
    ),
  );
}

// --- times --------------------------------------------------------------------------------------

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function relativeTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const abs = Math.abs(seconds);
  const units = [
    [60, "second", 1],
    [3600, "minute", 60],
    [86400, "hour", 3600],
    [86400 * 30, "day", 86400],
    [86400 * 365, "month", 86400 * 30],
    [Infinity, "year", 86400 * 365],
  ];
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [limit, unit, size] of units) {
    if (abs < limit) return format.format(-Math.round(seconds / size), unit);
  }
  return formatTime(iso);
}

const pad = (n, width = 2) => String(Math.trunc(Math.abs(n))).padStart(width, "0");

/** A datetime-local input's value ("2026-12-07T14:05" or with seconds), read as the browser's local time,
 * as an RFC 3339 string WITH the browser's offset ("2026-12-07T14:05:00+05:30"); null when empty or
 * invalid. The server needs the offset: a time without one is ambiguous. */
export function localInputToRfc3339(value) {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return (
    `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `${sign}${pad(offset / 60)}:${pad(offset % 60)}`
  );
}

/** The value a datetime-local input (step 1 s) shows for an instant, in the browser's local time. */
export function toLocalInput(isoOrDate) {
  const date = isoOrDate instanceof Date ? isoOrDate : new Date(isoOrDate);
  if (Number.isNaN(date.getTime())) return "";
  return (
    `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** A labelled datetime-local field (seconds allowed), prefilled with `initial` (an instant). */
export function whenField(label, initial, hint) {
  const input = h("input", { type: "datetime-local", step: 1, value: initial ? toLocalInput(initial) : "", required: true });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  return field(label, input, { hint: hint || `Your local time (${zone}); sent with its UTC offset.` });
}

/** A <time> showing "3 minutes ago" with the exact time as its title. */
export function timeAgo(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: formatTime(iso) }, relativeTime(iso));
}

// --- dialogs ------------------------------------------------------------------------------------

/**
 * A modal <dialog>: {dialog, body, footer, close()}. Focus moves into it and returns to the element that
 * had it when the dialog closes. Escape closes it (the browser's cancel).
 */
export function modal(title, { onClose, wide } = {}) {
  const opener = document.activeElement;
  const titleId = uid("dlg");
  const body = h("div", { class: "dialog-body" });
  const footer = h("div", { class: "dialog-footer" });
  const dialog = h("dialog", { class: ["dialog", wide && "wide"], "aria-labelledby": titleId }, h("h2", { id: titleId }, title), body, footer);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  });
  document.body.append(dialog);
  return {
    dialog,
    body,
    footer,
    open() {
      dialog.showModal();
      const first = dialog.querySelector("[autofocus]") || body.querySelector("input, select, textarea, button") || footer.querySelector("button");
      if (first) first.focus();
    },
    close() {
      if (dialog.open) dialog.close();
    },
  };
}

/**
 * Ask before doing something: resolves true on "Confirm", false on "Cancel"/Escape.
 * `typed`: the user must type this exact text first (for deletes that cannot be undone).
 * `comment`: also ask for an optional comment; then resolves {comment} instead of true.
 */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false, typed, comment = false }) {
  return new Promise((resolve) => {
    let result = false;
    const dlg = modal(title, { onClose: () => resolve(result) });
    const confirm = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    let typedInput = null;
    let commentInput = null;
    const parts = [typeof message === "string" ? h("p", {}, message) : message];
    if (typed !== undefined) {
      typedInput = textInput({ autofocus: true });
      parts.push(field(h("span", {}, "Type ", h("code", {}, typed), " to confirm"), typedInput).element);
      confirm.disabled = true;
      typedInput.addEventListener("input", () => {
        confirm.disabled = typedInput.value !== typed;
      });
    }
    if (comment) {
      commentInput = textInput({ maxlength: 2000 });
      parts.push(field("Comment (optional)", commentInput, { hint: "Saved in the audit log and the version history." }).element);
    }
    replace(dlg.body, ...parts);
    confirm.addEventListener("click", () => {
      if (confirm.disabled) return;
      result = comment ? { comment: commentInput.value } : true;
      dlg.close();
    });
    cancel.addEventListener("click", () => dlg.close());
    replace(dlg.footer, cancel, confirm);
    dlg.open();
    if (!typedInput && !commentInput) confirm.focus();
  });
}

/** A form in a dialog: `fields` are field() results (shown in order, or `content` when given); `submit()` may
 * throw an ApiError, which is shown in the dialog (details at their fields when the path names one).
 * Resolves with submit's result, or null when cancelled. */
export function formDialog({ title, fields, submitLabel, submit, intro, content, wide }) {
  return new Promise((resolve) => {
    let result = null;
    const dlg = modal(title, { onClose: () => resolve(result), wide });
    const banner = errorBanner(null);
    const form = h("form", { class: "form", novalidate: true }, intro || null, banner, content || Object.values(fields).map((f) => f.element));
    const submitButton = h("button", { type: "submit", class: "primary" }, submitLabel);
    const cancel = h("button", { type: "button", on: { click: () => dlg.close() } }, "Cancel");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const f of Object.values(fields)) f.clear();
      banner.hidden = true;
      submitButton.disabled = true;
      try {
        result = await submit();
        dlg.close();
      } catch (error) {
        const unplaced = placeErrors(error, fields);
        fillErrorBanner(banner, error, null, unplaced);
      } finally {
        submitButton.disabled = false;
      }
    });
    submitButton.setAttribute("form", uid("form"));
    form.id = submitButton.getAttribute("form");
    replace(dlg.body, form);
    replace(dlg.footer, cancel, submitButton);
    dlg.open();
  });
}

/** Show each ApiError detail at the field its pointer's first segment names; returns the rest. */
export function placeErrors(error, fields) {
  if (!(error instanceof ApiError)) return [];
  const rest = [];
  for (const detail of error.details) {
    const [, name, ...deeper] = (detail.path || "").split("/");
    const target = name !== undefined ? fields[name] : undefined;
    if (target) target.error(deeper.length ? `${deeper.join("/")}: ${detail.message}` : detail.message);
    else rest.push(detail);
  }
  return rest;
}

// --- toasts -------------------------------------------------------------------------------------

let toastRegion = null;

/** A short message in a polite live region (screen readers announce it), gone after a few seconds. */
export function toast(message, kind = "ok") {
  if (!toastRegion || !toastRegion.isConnected) {
    toastRegion = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(toastRegion);
  }
  const item = h("div", { class: ["toast", kind] }, message);
  toastRegion.append(item);
  setTimeout(() => item.remove(), 5000);
}

// --- secrets ------------------------------------------------------------------------------------

/** A Copy button for `text`, saying whether it worked. The Clipboard API needs a secure context (HTTPS or
 * localhost); elsewhere the text is selected in `input` and copied with the older execCommand. */
export function copyButton(text, label = "Copy", input = null) {
  const btn = h("button", { type: "button" }, label);
  btn.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "Copied";
    } catch {
      let copied = false;
      if (input) {
        input.focus();
        input.select();
        try {
          copied = document.execCommand("copy");
        } catch {
          copied = false;
        }
      }
      btn.textContent = copied ? "Copied" : "Press Ctrl+C to copy";
    }
    setTimeout(() => {
      btn.textContent = label;
    }, 2000);
  });
  return btn;
}

/** Show a new secret once: it cannot be retrieved again. Closing the dialog forgets it. `created` is a
 * new key ({key, name, role, prefix, …}); a webhook's signing secret passes `secret`, `note` and `facts`
 * ([[label, value], …]) instead. */
export function showSecretOnce(title, created, { secret, note, facts } = {}) {
  const value = secret ?? created.key;
  const rows =
    facts ??
    [
      ["Name", created.name],
      ["Role", created.role],
      ["Prefix", h("code", {}, created.prefix)],
      created.environment ? ["Environment", created.environment] : null,
      created.expires_at ? ["Expires", formatTime(created.expires_at)] : null,
    ].filter(Boolean);
  return new Promise((resolve) => {
    const dlg = modal(title, { onClose: () => resolve() });
    const input = h("input", { type: "text", readonly: true, value, class: "secret", "aria-label": secret ? "New secret" : "New key", "data-testid": "new-secret" });
    input.addEventListener("focus", () => input.select());
    replace(
      dlg.body,
      h("p", { class: "banner warning" }, note || "Copy this key now. It is shown only once; Flagyard stores only its hash."),
      h("div", { class: "secret-row" }, input, copyButton(value, "Copy", input)),
      h("dl", { class: "facts" }, rows.map(([label, v]) => [h("dt", {}, label), h("dd", {}, v)])),
    );
    replace(dlg.footer, h("button", { type: "button", class: "primary", on: { click: () => dlg.close() } }, "Done"));
    dlg.open();
  });
}

/** JSON for reading: stable indentation, always text. */
export function jsonBlock(value, attrs = {}) {
  return h("pre", { class: "json", ...attrs }, JSON.stringify(value, null, 2));
}

/** Debounce input handlers (search boxes). */
export function debounce(fn, ms = 200) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
