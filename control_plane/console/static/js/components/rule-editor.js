// The rule editor: a flag's configuration in one environment (everything but `enabled`, which the page
// toggles on its own), and segmentRulesEditor: a segment's rules, with the same clause editor. Each edits
// a plain state object and serializes it to the API body (EnvConfigPatch; SegmentUpdate's `rules`); the
// server stays the one validator. Client-side hints (not a number, not JSON, weights that do not sum)
// only help: an invalid entry is still sent as typed, so the server's 422 names the field and
// showErrors() puts its message there.

import { h, replace, uid } from "../dom.js";
import { ErrorPlacer, FieldRegistry, KEY_RE, hint, labelled, select } from "./editor-fields.js";

/** Operators of rule_engine.model.Operator, grouped by the values editor each needs. */
export const OPERATORS = [
  { value: "eq", label: "equals", kind: "scalar", one: true },
  { value: "neq", label: "does not equal", kind: "scalar", one: true },
  { value: "in", label: "is one of", kind: "scalar" },
  { value: "not_in", label: "is not one of", kind: "scalar" },
  { value: "contains", label: "contains", kind: "strings" },
  { value: "starts_with", label: "starts with", kind: "strings" },
  { value: "ends_with", label: "ends with", kind: "strings" },
  { value: "matches", label: "matches regex (RE2)", kind: "regex" },
  { value: "lt", label: "< (number)", kind: "number", one: true },
  { value: "lte", label: "≤ (number)", kind: "number", one: true },
  { value: "gt", label: "> (number)", kind: "number", one: true },
  { value: "gte", label: "≥ (number)", kind: "number", one: true },
  { value: "semver_eq", label: "version =", kind: "semver", one: true },
  { value: "semver_lt", label: "version <", kind: "semver", one: true },
  { value: "semver_lte", label: "version ≤", kind: "semver", one: true },
  { value: "semver_gt", label: "version >", kind: "semver", one: true },
  { value: "semver_gte", label: "version ≥", kind: "semver", one: true },
  { value: "before", label: "is before (date/time)", kind: "time", one: true },
  { value: "after", label: "is after (date/time)", kind: "time", one: true },
  { value: "exists", label: "exists", kind: "none" },
  { value: "not_exists", label: "does not exist", kind: "none" },
  { value: "segment_match", label: "is in segment", kind: "segments" },
];
const OPS = new Map(OPERATORS.map((o) => [o.value, o]));

/** Bounds of rule_engine/limits.py the editor enforces as it is used (the server checks them all). */
export const LIMITS = { rules: 1000, segmentRules: 1000, clauses: 100, clauseValues: 10000, prerequisites: 50, basisPoints: 10000 };

const SEMVER_RE = /^[vV]?\d+(\.\d+){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;
const P = "fy-re";

// --- values: state <-> body ------------------------------------------------------------------------

function scalarItem(v) {
  if (typeof v === "number") return { type: "number", text: String(v) };
  if (typeof v === "boolean") return { type: "boolean", text: String(v) };
  if (typeof v === "string") return { type: "string", text: v };
  return { type: "json", text: JSON.stringify(v) };
}

function parseNumber(text) {
  const t = String(text).trim();
  if (t === "" || !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
}

function itemValue(item) {
  if (item.type === "number") {
    const n = parseNumber(item.text);
    return n === null ? item.text : n;
  }
  if (item.type === "boolean") return item.text === "true";
  if (item.type === "json") {
    try {
      return JSON.parse(item.text);
    } catch {
      return item.text;
    }
  }
  return item.text;
}

/** A date-time as the UTC text a datetime-local input shows ("2026-01-31T12:00:00"), or null. */
function toLocalInput(raw) {
  let ms = null;
  if (typeof raw === "number") ms = raw * 1000;
  else if (typeof raw === "string" && raw.trim()) {
    const s = raw.trim();
    const hasZone = /([zZ]|[+-]\d\d:?\d\d)$/.test(s);
    const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(s);
    ms = Date.parse(hasZone || dateOnly ? s : s + "Z");
  }
  if (ms === null || Number.isNaN(ms)) return null;
  return new Date(ms).toISOString().slice(0, 19);
}

function timeValue(text) {
  const t = String(text).trim();
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(t)) return t + ":00Z";
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?$/.test(t)) return t + "Z";
  return t;
}

function clauseState(c) {
  const op = OPS.has(c.operator) ? c.operator : "in";
  const kind = OPS.get(op).kind;
  const values = Array.isArray(c.values) ? c.values : [];
  const state = { attribute: c.attribute ?? "", operator: op, negate: !!c.negate, items: [], segments: [] };
  if (kind === "segments") state.segments = values.map(String);
  else if (kind === "time") state.items = values.map((v) => ({ type: "time", text: toLocalInput(v) ?? String(v) }));
  else if (kind === "number") state.items = values.map((v) => ({ type: "number", text: String(v) }));
  else if (kind === "scalar") state.items = values.map(scalarItem);
  else state.items = values.map((v) => ({ type: "string", text: typeof v === "string" ? v : JSON.stringify(v) }));
  if (kind !== "none" && kind !== "segments" && state.items.length === 0) {
    state.items.push({ type: kind === "number" ? "number" : kind === "time" ? "time" : "string", text: "" });
  }
  return state;
}

/** Values kept when the operator changes: text carries over where the new kind takes text. */
function convertItems(clause, nextOp) {
  const next = OPS.get(nextOp);
  const texts = clause.items.map((i) => i.text).filter((t) => t !== "");
  if (next.kind === "none" || next.kind === "segments") clause.items = [];
  else if (next.kind === "scalar") clause.items = texts.map((t) => ({ type: parseNumber(t) === null ? "string" : "number", text: t }));
  else if (next.kind === "number") clause.items = texts.map((t) => ({ type: "number", text: t }));
  else if (next.kind === "time") clause.items = texts.map((t) => ({ type: "time", text: toLocalInput(t) ?? t }));
  else clause.items = texts.map((t) => ({ type: "string", text: t }));
  if (next.one) clause.items = clause.items.slice(0, 1);
  if (next.kind !== "none" && next.kind !== "segments" && clause.items.length === 0) {
    clause.items.push({ type: next.kind === "number" ? "number" : next.kind === "time" ? "time" : "string", text: "" });
  }
  clause.operator = nextOp;
}

/** The editable rows of a split: its variations, then the flag's other variants at weight 0. A
 * `fresh` split (a proposal, not saved) has no original rows, so zero-weight rows are left out. */
function splitState(split, variantNames, fresh = false) {
  const rows = [];
  const seen = new Set();
  for (const v of split?.variations || []) {
    rows.push({ variant: v.variant, weight: String(v.weight), original: !fresh, known: variantNames.includes(v.variant) });
    seen.add(v.variant);
  }
  for (const name of variantNames) {
    if (!seen.has(name)) rows.push({ variant: name, weight: "0", original: false, known: true });
  }
  return {
    unit: split?.weight_unit === "relative" ? "relative" : "basis_points",
    bucket_by: split?.bucket_by ?? "targeting_key",
    rows,
  };
}

/** An even split of 10000 basis points (the remainder goes to the first variants). */
function evenSplit(variantNames) {
  const n = Math.max(variantNames.length, 1);
  const base = Math.floor(LIMITS.basisPoints / n);
  let rest = LIMITS.basisPoints - base * n;
  return {
    variations: variantNames.map((variant) => {
      const extra = rest > 0 ? 1 : 0;
      rest -= extra;
      return { variant, weight: base + extra };
    }),
  };
}

/** A row's weight as an integer in its unit, or null if what was typed is not one. */
function weightOf(row) {
  const n = parseNumber(row.weight);
  return n === null || !Number.isInteger(n) || n < 0 ? null : n;
}

// --- clauses: shared by flag rules and segment rules ---------------------------------------------

/** Controls that honour read-only: inputs disabled, buttons left out. */
/**
 * What both editors keep besides their clauses: the live hints (problem(key, message, hinted) records one
 * in clientProblems and shows it), the server's errors, and the handle a page holds:
 * handle(element, serialize), serialize(reg) → the body, registering each field's pointer in reg.
 */
function editorCore() {
  const errors = new ErrorPlacer(P);
  const clientProblems = new Map();
  function problem(key, message, hinted) {
    if (message) clientProblems.set(key, { message, el: hinted.element });
    else clientProblems.delete(key);
    hinted.set(message);
  }
  function handle(element, serialize) {
    return {
      element,
      value() {
        return serialize(new FieldRegistry());
      },
      /** Place the server's `details` ([{path, message}]) at their fields; returns those left unplaced. */
      showErrors(details) {
        const reg = new FieldRegistry();
        serialize(reg);
        return errors.place(reg, details);
      },
      clearErrors() {
        errors.clear();
      },
      /** What the live hints found wrong, as [{key, message}] (the page may refuse to save while any). */
      clientErrors() {
        return [...clientProblems.entries()]
          .filter(([, { el }]) => el.isConnected && !el.parentElement.closest("[hidden]"))
          .map(([key, { message }]) => ({ key, message }));
      },
    };
  }
  return { errors, clientProblems, problem, handle };
}

function controls(readOnly) {
  return {
    ctl: (tag, attrs, ...children) => h(tag, { ...attrs, disabled: readOnly || attrs.disabled }, ...children),
    button: (label, onClick, attrs = {}) =>
      readOnly ? null : h("button", { type: "button", class: `${P}-btn`, ...attrs, on: { click: onClick } }, label),
  };
}

/**
 * The clause editor of both editors (one operator table, one values editor per kind, one serializer):
 *   readOnly; segmentList: the segments segment_match offers; attrListId: the attribute <datalist>;
 *   problem(key, message, hint) and clientProblems: the owner's live hints; render(): re-render the owner;
 *   noSegments: what segment_match says when it has no segment to offer.
 * A rule is anything with a `clauses` array of clauseState()s.
 */
function clauseKit({ readOnly, segmentList, attrListId, problem, clientProblems, render, noSegments = "No segments in this project yet: create one first." }) {
  const { ctl, button } = controls(readOnly);

  function valuesEditor(clause, box, keyPrefix) {
    const op = OPS.get(clause.operator);
    const els = { box, items: [], segments: [] };
    const parts = [];
    if (op.kind === "none") {
      parts.push(h("span", { class: `${P}-muted` }, "no value"));
    } else if (op.kind === "segments") {
      const known = new Set(segmentList.map((s) => s.key));
      const list = [...segmentList.map((s) => ({ key: s.key, name: s.name })), ...clause.segments.filter((k) => !known.has(k)).map((k) => ({ key: k, name: null }))];
      if (list.length === 0) parts.push(h("span", { class: `${P}-muted` }, noSegments));
      const group = h(
        "div",
        { class: `${P}-segments`, role: "group", "aria-label": "Segments" },
        list.map((s) => {
          const cb = ctl("input", {
            type: "checkbox",
            value: s.key,
            checked: clause.segments.includes(s.key),
            on: {
              change: () => {
                clause.segments = cb.checked ? [...clause.segments, s.key] : clause.segments.filter((k) => k !== s.key);
              },
            },
          });
          els.segments.push({ key: s.key, cb });
          const text = s.name === null ? `${s.key} (missing)` : s.name && s.name !== s.key ? `${s.key} — ${s.name}` : s.key;
          return h("label", { class: [`${P}-segment`, s.name === null && `${P}-unknown`] }, cb, " ", text);
        }),
      );
      els.group = group;
      parts.push(group);
    } else {
      clause.items.forEach((item, i) => {
        const row = h("div", { class: `${P}-value` });
        let input;
        const itemHint = hint(row, P);
        const check = () => {
          let message = null;
          if (item.type === "number" && parseNumber(item.text) === null) message = "Not a number.";
          else if (op.kind === "semver" && !SEMVER_RE.test(item.text.trim())) message = "Not a semantic version (e.g. 1.2.3).";
          else if (op.kind === "time" && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(item.text)) message = "Pick a date and time (UTC).";
          else if (op.kind === "regex") {
            try {
              new RegExp(item.text);
            } catch {
              message = "This does not look like a valid regular expression.";
            }
          }
          problem(`${keyPrefix}:v${i}`, message, itemHint);
        };
        if (op.kind === "scalar" && item.type === "boolean") {
          input = ctl("select", { "aria-label": `Value ${i + 1}`, on: { change: () => (item.text = input.value) } }, h("option", { value: "true", selected: item.text === "true" }, "true"), h("option", { value: "false", selected: item.text !== "true" }, "false"));
        } else if (op.kind === "time") {
          input = ctl("input", { type: "datetime-local", step: "1", value: item.text, "aria-label": "Date and time (UTC)", on: { input: () => ((item.text = input.value), check()) } });
        } else {
          input = ctl("input", {
            type: "text",
            value: item.text,
            spellcheck: "false",
            inputmode: item.type === "number" ? "decimal" : null,
            class: op.kind === "regex" || op.kind === "semver" ? `${P}-mono` : null,
            placeholder: { number: "e.g. 42", semver: "e.g. 1.2.3", regex: "e.g. ^.*@example\\.com$" }[op.kind] ?? (item.type === "number" ? "a number" : "text"),
            "aria-label": `Value ${i + 1}`,
            on: { input: () => ((item.text = input.value), check()) },
          });
        }
        if (op.kind === "scalar") {
          const typeSel = ctl(
            "select",
            {
              class: `${P}-vtype`,
              "aria-label": `Type of value ${i + 1}`,
              on: {
                change: () => {
                  item.type = typeSel.value;
                  if (item.type === "boolean" && item.text !== "true") item.text = "false";
                  renderValues(clause, box, keyPrefix);
                },
              },
            },
            ["string", "number", "boolean", ...(item.type === "json" ? ["json"] : [])].map((t) => h("option", { value: t, selected: item.type === t }, t === "string" ? "text" : t)),
          );
          row.append(typeSel);
        }
        row.append(input);
        if (op.kind === "time") row.append(h("span", { class: `${P}-unit` }, "UTC"));
        if (!op.one && clause.items.length > 1) {
          row.append(button("✕", () => (clause.items.splice(i, 1), renderValues(clause, box, keyPrefix)), { "aria-label": `Remove value ${i + 1}`, class: `${P}-btn ${P}-icon` }));
        }
        row.append(itemHint.element);
        check();
        els.items.push({ row, input });
        parts.push(row);
      });
      if (!op.one && clause.items.length < LIMITS.clauseValues) {
        parts.push(
          button("+ value", () => {
            const last = clause.items[clause.items.length - 1];
            clause.items.push({ type: op.kind === "scalar" && last ? last.type : "string", text: "" });
            renderValues(clause, box, keyPrefix);
            const inputs = box.querySelectorAll("input[type=text]");
            if (inputs.length) inputs[inputs.length - 1].focus();
          }),
        );
      }
    }
    replace(box, parts);
    return els;
  }

  function renderValues(clause, box, keyPrefix) {
    for (const key of [...clientProblems.keys()]) if (key.startsWith(`${keyPrefix}:v`)) clientProblems.delete(key);
    clause.els.values = valuesEditor(clause, box, keyPrefix);
  }

  function clauseEditor(rule, clause, c, keyPrefix) {
    clause.els = {};
    const attr = ctl("input", {
      type: "text",
      value: clause.attribute,
      list: attrListId,
      spellcheck: "false",
      placeholder: "attribute, e.g. email",
      "aria-label": `Clause ${c + 1} attribute`,
      on: { input: () => (clause.attribute = attr.value) },
    });
    const opSel = ctl(
      "select",
      {
        "aria-label": `Clause ${c + 1} operator`,
        on: {
          change: () => {
            convertItems(clause, opSel.value);
            attrWrap.hidden = OPS.get(clause.operator).kind === "segments";
            renderValues(clause, valuesBox, keyPrefix);
          },
        },
      },
      OPERATORS.map((o) => h("option", { value: o.value, selected: o.value === clause.operator }, o.label)),
    );
    const negate = ctl("input", { type: "checkbox", checked: clause.negate, on: { change: () => (clause.negate = negate.checked) } });
    const attrWrap = h("span", { class: `${P}-attr`, hidden: OPS.get(clause.operator).kind === "segments" }, attr);
    const valuesBox = h("div", { class: `${P}-values` });
    const row = h(
      "div",
      { class: `${P}-clause` },
      h("span", { class: `${P}-clause-lead` }, c === 0 ? "If" : "and"),
      attrWrap,
      h("label", { class: `${P}-negate`, title: "Invert the outcome (a missing attribute still never matches)" }, negate, " not"),
      opSel,
      valuesBox,
      rule.clauses.length > 1 ? button("Remove", () => (rule.clauses.splice(c, 1), render()), { "aria-label": `Remove clause ${c + 1}`, class: `${P}-btn ${P}-clause-remove` }) : null,
      h("span", { class: `${P}-slot` }),
    );
    Object.assign(clause.els, { row, attr, opSel, negate, valuesBox, slot: row.lastChild });
    renderValues(clause, valuesBox, keyPrefix);
    return row;
  }

  function serializeClause(clause, path, reg) {
    const { row, attr, opSel, negate, valuesBox, values, slot } = clause.els;
    reg.section(path, row.firstChild);
    reg.add(`${path}/attribute`, attr, slot);
    reg.add(`${path}/operator`, opSel, slot);
    reg.add(`${path}/negate`, negate, slot);
    reg.add(`${path}/values`, valuesBox, valuesBox);
    const kind = OPS.get(clause.operator).kind;
    const out = { operator: clause.operator, negate: clause.negate };
    if (kind === "segments") {
      out.attribute = null;
      out.values = clause.segments.slice();
      clause.segments.forEach((key, i) => {
        const hit = values.segments.find((s) => s.key === key);
        if (hit) reg.add(`${path}/values/${i}`, hit.cb, hit.cb.parentElement);
      });
    } else {
      out.attribute = clause.attribute.trim() === "" ? null : clause.attribute.trim();
      out.values = clause.items.map((item, i) => {
        const el = values.items[i];
        if (el) reg.add(`${path}/values/${i}`, el.input, el.row.lastChild);
        if (kind === "time") return timeValue(item.text);
        if (kind === "number") return itemValue({ ...item, type: "number" });
        return itemValue(item);
      });
    }
    return out;
  }

  /** The clauses of `rule` (AND) and the button adding one. */
  function clauseList(rule, keyPrefix) {
    const clausesBox = h("div", { class: `${P}-clauses` }, rule.clauses.map((clause, c) => clauseEditor(rule, clause, c, `${keyPrefix}c${c}`)));
    const addClause = rule.clauses.length < LIMITS.clauses ? button("+ clause (AND)", () => (rule.clauses.push(clauseState({ operator: "in", values: [""] })), render())) : null;
    return { clausesBox, addClause };
  }

  /** The `clauses` of `rule` at `path` (e.g. /rules/0), each field registered; errors about the list
   * itself go after `heading`. */
  function serializeClauses(rule, path, reg, heading) {
    reg.section(`${path}/clauses`, heading);
    return rule.clauses.map((clause, c) => serializeClause(clause, `${path}/clauses/${c}`, reg));
  }

  return { clauseList, serializeClauses };
}

/** The attribute suggestions: targeting_key and every attribute the given rule lists use. */
function attributeList(id, ruleLists) {
  const attrs = new Set(["targeting_key"]);
  for (const rules of ruleLists) for (const rule of rules || []) for (const c of rule.clauses || []) if (c.attribute) attrs.add(c.attribute);
  return h("datalist", { id }, [...attrs].map((a) => h("option", { value: a })));
}

/** Move and remove buttons of rule `r` of `count`; the move buttons carry data-focus keys so a
 * re-rendered list can give the focus back to the button pressed. */
function ruleTools(button, { r, count, focusKey, label, move, remove }) {
  return h(
    "div",
    { class: `${P}-rule-tools` },
    button("↑", () => move(r, -1), { "aria-label": `Move ${label} up`, disabled: r === 0, class: `${P}-btn ${P}-icon`, dataset: { focus: `up-${focusKey}` } }),
    button("↓", () => move(r, 1), { "aria-label": `Move ${label} down`, disabled: r === count - 1, class: `${P}-btn ${P}-icon`, dataset: { focus: `down-${focusKey}` } }),
    button("Remove rule", remove, { class: `${P}-btn ${P}-danger` }),
  );
}

/** After a re-render, focus the control named by `focusKey`: a `data-focus` key (a move button; the
 * other direction's when the rule reached the end of the list), or "rule-<n>" for the first text input
 * of rule n (a rule just added). */
function focusAfterRender(element, focusKey) {
  if (!focusKey) return;
  const byKey = (key) => element.querySelector(`[data-focus="${CSS.escape(key)}"]:not([disabled])`);
  const other = focusKey.startsWith("up-") ? `down-${focusKey.slice(3)}` : focusKey.startsWith("down-") ? `up-${focusKey.slice(5)}` : null;
  const target =
    byKey(focusKey) ||
    (other ? byKey(other) : null) ||
    (focusKey.startsWith("rule-") ? element.querySelectorAll(`.${P}-rule`)[Number(focusKey.slice(5))]?.querySelector("input[type=text]:not([hidden])") : null);
  if (target) target.focus();
}

// --- the editor ------------------------------------------------------------------------------------

/**
 * ruleEditor({flag, environment, config, segments, flags, readOnly, variantsOf})
 *   flag: FlagOut; environment: env key; config: EnvConfigOut; segments: SegmentOut[];
 *   flags: FlagSummary[] (prerequisite candidates); variantsOf(flagKey) (optional): the variant names
 *   of another flag, or a Promise of them, for the prerequisite variant picker (FlagSummary has none).
 * → {element, value(), showErrors(details), clearErrors(), clientErrors()}
 */
export function ruleEditor({ flag, environment, config, segments = [], flags = [], readOnly = false, variantsOf }) {
  const variantNames = Object.keys(flag?.variants || {});
  const cfg = config || {};
  const candidates = (flags || []).filter((f) => f.key !== flag?.key);
  const segmentList = segments || [];
  let ruleCounter = 0;

  const nextRuleId = () => {
    const taken = new Set(state.rules.map((r) => r.id));
    let id;
    do {
      ruleCounter += 1;
      id = `rule-${ruleCounter}`;
    } while (taken.has(id));
    return id;
  };

  const state = {
    mode: cfg.targeting !== null && cfg.targeting !== undefined ? "json" : "rules",
    off_variant: cfg.off_variant ?? null,
    defaultMode: cfg.default_split ? "split" : "variant",
    default_variant: cfg.default_variant ?? null,
    default_split: splitState(cfg.default_split || evenSplit(variantNames), variantNames, !cfg.default_split),
    rules: (cfg.rules || []).map((r) => ({
      id: r.id,
      description: r.description ?? "",
      clauses: (r.clauses || []).map(clauseState),
      serve: r.split ? "split" : "variant",
      variant: r.variant ?? null,
      split: splitState(r.split || evenSplit(variantNames), variantNames, !r.split),
    })),
    prerequisites: (cfg.prerequisites || []).map((p) => ({ flag: p.flag, variant: p.variant })),
    targetingText: cfg.targeting !== null && cfg.targeting !== undefined ? JSON.stringify(cfg.targeting, null, 2) : "",
  };

  const { errors, clientProblems, problem, handle } = editorCore();
  const attrListId = uid(`${P}-attrs`);
  const element = h("div", {
    class: [`${P}`, readOnly && `${P}-readonly`],
    dataset: { environment: environment ?? "" },
  });
  const serializers = [];

  const { ctl, button } = controls(readOnly);
  const { clauseList, serializeClauses } = clauseKit({ readOnly, segmentList, attrListId, problem, clientProblems, render });

  const variantOptions = (noneLabel) => [
    ...(noneLabel ? [{ value: "", label: noneLabel }] : []),
    ...variantNames.map((v) => ({ value: v, label: v })),
  ];


  // --- split ---

  function splitEditor(split, label, keyPrefix) {
    const fieldset = h("fieldset", { class: `${P}-split` }, h("legend", {}, label));
    const rowsBox = h("div", { class: `${P}-split-rows` });
    const total = h("p", { class: `${P}-split-total`, "aria-live": "polite" });
    const sumHint = hint(rowsBox, P);
    const unitSelect = ctl(
      "select",
      {
        on: {
          change: () => {
            convertUnit(split, unitSelect.value);
            renderRows();
          },
        },
      },
      h("option", { value: "basis_points", selected: split.unit === "basis_points" }, "percent (basis points, sum 100%)"),
      h("option", { value: "relative", selected: split.unit === "relative" }, "relative weights"),
    );
    const bucket = ctl("input", {
      type: "text",
      value: split.bucket_by,
      spellcheck: "false",
      list: attrListId,
      on: { input: () => (split.bucket_by = bucket.value) },
    });
    const els = { fieldset, legend: fieldset.firstChild, rowsBox, total, unitSelect, bucket, rows: [] };

    function recount() {
      let sum = 0;
      let bad = false;
      for (const row of split.rows) {
        const w = weightOf(row);
        if (w === null) bad = true;
        else sum += w;
      }
      let message = null;
      if (split.unit === "basis_points") {
        total.textContent = `Total: ${(sum / 100).toFixed(2)}% of 100%`;
        if (!bad && sum !== LIMITS.basisPoints) message = `The weights sum to ${(sum / 100).toFixed(2)}%; they must sum to 100%.`;
      } else {
        total.textContent = `Total weight: ${sum}`;
        if (!bad && sum <= 0) message = "At least one weight must be positive.";
      }
      if (bad) message = split.unit === "basis_points" ? "Each weight is a percentage from 0 to 100 (two decimals)." : "Each weight is a whole number ≥ 0.";
      problem(`${keyPrefix}:sum`, message, sumHint);
    }

    function renderRows() {
      els.rows = [];
      replace(
        rowsBox,
        split.rows.map((row) => {
          const pct = split.unit === "basis_points";
          if (pct && row.pct === undefined) row.pct = weightOf(row) === null ? row.weight : String(weightOf(row) / 100);
          const input = ctl("input", {
            type: "text",
            inputmode: pct ? "decimal" : "numeric",
            class: `${P}-weight`,
            value: pct ? row.pct : row.weight,
            "aria-label": `Weight of ${row.variant}${pct ? " (%)" : ""}`,
            on: {
              input: () => {
                if (pct) {
                  row.pct = input.value;
                  const n = parseNumber(input.value);
                  const bp = n === null ? null : Math.round(n * 100);
                  row.weight = bp !== null && Math.abs(bp - n * 100) < 1e-6 ? String(bp) : input.value;
                } else row.weight = input.value;
                recount();
              },
            },
          });
          const name = h("span", { class: [`${P}-split-variant`, !row.known && `${P}-unknown`] }, row.variant, row.known ? null : " (not a variant)");
          const slot = h("span", { class: `${P}-slot` });
          const el = h("div", { class: `${P}-split-row` }, name, input, pct ? h("span", { class: `${P}-unit` }, "%") : null, slot);
          els.rows.push({ row, el, name, input, slot });
          return el;
        }),
      );
      recount();
    }

    fieldset.append(
      rowsBox,
      sumHint.element,
      total,
      h("div", { class: `${P}-split-options` }, labelled(P, "Weights", unitSelect), labelled(P, "Bucket by (attribute)", bucket)),
    );
    renderRows();

    function serialize(path, reg) {
      reg.section(path, els.legend);
      reg.add(`${path}/variations`, rowsBox, total);
      reg.add(`${path}/bucket_by`, bucket);
      reg.add(`${path}/weight_unit`, unitSelect);
      let chosen = els.rows.filter(({ row }) => row.original || weightOf(row) !== 0);
      if (chosen.length === 0) chosen = els.rows;
      const variations = chosen.map(({ row, input, slot }, i) => {
        reg.add(`${path}/variations/${i}`, input, slot);
        reg.add(`${path}/variations/${i}/weight`, input, slot);
        reg.add(`${path}/variations/${i}/variant`, input, slot);
        const w = weightOf(row);
        return { variant: row.variant, weight: w === null ? row.weight : w };
      });
      return { variations, bucket_by: split.bucket_by, weight_unit: split.unit };
    }
    return { element: fieldset, serialize };
  }

  /** Keep the proportions when the unit changes; basis points are rescaled to sum to 10000. */
  function convertUnit(split, unit) {
    if (unit === split.unit) return;
    const weights = split.rows.map((row) => weightOf(row) ?? 0);
    split.unit = unit;
    for (const row of split.rows) delete row.pct;
    if (unit === "basis_points") {
      const sum = weights.reduce((a, b) => a + b, 0);
      const scaled = weights.map((w) => (sum ? Math.floor((w * LIMITS.basisPoints) / sum) : 0));
      const rest = LIMITS.basisPoints - scaled.reduce((a, b) => a + b, 0);
      const biggest = weights.indexOf(Math.max(...weights));
      if (sum && biggest >= 0) scaled[biggest] += rest;
      split.rows.forEach((row, i) => (row.weight = String(scaled[i])));
    } else {
      split.rows.forEach((row, i) => (row.weight = String(weights[i])));
    }
  }

  // --- rules ---

  function ruleEditorOne(rule, r) {
    const keyPrefix = `r${r}`;
    const count = state.rules.length;
    const legend = h("legend", {}, `Rule ${r + 1}`);
    const idInput = ctl("input", {
      type: "text",
      value: rule.id,
      spellcheck: "false",
      class: `${P}-mono`,
      on: {
        input: () => {
          rule.id = idInput.value;
          problem(`${keyPrefix}:id`, KEY_RE.test(rule.id) ? null : "1-128 of A-Z a-z 0-9 _ . - , starting with a letter or digit.", idHintBound);
        },
      },
    });
    const idHintBound = hint(idInput, P);
    const desc = ctl("input", { type: "text", value: rule.description, placeholder: "what this rule is for", on: { input: () => (rule.description = desc.value) } });
    const { clausesBox, addClause } = clauseList(rule, keyPrefix);

    const serveName = uid(`${P}-serve`);
    const serveVariant = ctl("input", { type: "radio", name: serveName, value: "variant", checked: rule.serve === "variant", on: { change: () => ((rule.serve = "variant"), sync()) } });
    const serveSplit = ctl("input", { type: "radio", name: serveName, value: "split", checked: rule.serve === "split", on: { change: () => ((rule.serve = "split"), sync()) } });
    const variantSel = select(variantOptions("— choose a variant —"), rule.variant ?? "", {
      disabled: readOnly,
      "aria-label": `Rule ${r + 1} variant`,
      on: { change: () => (rule.variant = variantSel.value || null) },
    });
    const split = splitEditor(rule.split, "Split", `${keyPrefix}s`);
    const sync = () => {
      variantSel.hidden = rule.serve !== "variant";
      split.element.hidden = rule.serve !== "split";
    };
    sync();

    const tools = readOnly
      ? null
      : ruleTools(button, { r, count, focusKey: rule.id, label: `rule ${r + 1}`, move, remove: () => (state.rules.splice(r, 1), render()) });
    const fieldset = h(
      "fieldset",
      { class: `${P}-rule` },
      legend,
      tools,
      h("div", { class: `${P}-rule-meta` }, labelled(P, "Rule id", idInput, `${P}-id`), idHintBound.element, labelled(P, "Description", desc, `${P}-desc`)),
      clausesBox,
      addClause,
      h(
        "div",
        { class: `${P}-serve`, role: "radiogroup", "aria-label": `Rule ${r + 1} serves` },
        h("span", { class: `${P}-serve-lead` }, "then serve"),
        h("label", {}, serveVariant, " a variant"),
        h("label", {}, serveSplit, " a percentage split"),
      ),
      variantSel,
      split.element,
    );
    rule.els = { fieldset, legend, idInput, desc, clausesBox, variantSel, split, serveVariant };
    return fieldset;
  }

  function move(r, delta) {
    const to = r + delta;
    if (to < 0 || to >= state.rules.length) return;
    const [rule] = state.rules.splice(r, 1);
    state.rules.splice(to, 0, rule);
    render(`${delta < 0 ? "up" : "down"}-${rule.id}`);
  }

  function serializeRule(rule, path, reg) {
    const { fieldset, legend, idInput, desc, clausesBox, variantSel, split, serveVariant } = rule.els;
    reg.section(path, legend);
    reg.add(`${path}/id`, idInput);
    reg.add(`${path}/description`, desc);
    const out = {
      id: rule.id,
      description: rule.description,
      clauses: serializeClauses(rule, path, reg, legend),
    };
    if (rule.serve === "split") {
      out.split = split.serialize(`${path}/split`, reg);
      reg.add(`${path}/variant`, serveVariant, serveVariant.parentElement.parentElement);
    } else {
      out.variant = rule.variant;
      reg.add(`${path}/variant`, variantSel);
      reg.add(`${path}/split`, serveVariant, serveVariant.parentElement.parentElement);
    }
    return out;
  }

  // --- prerequisites ---

  const variantCache = new Map();
  function knownVariants(flagKey, onLoad) {
    const listed = candidates.find((f) => f.key === flagKey);
    if (listed && listed.variants && typeof listed.variants === "object") return Object.keys(listed.variants);
    if (variantCache.has(flagKey)) return variantCache.get(flagKey);
    if (typeof variantsOf !== "function" || !flagKey) return [];
    variantCache.set(flagKey, []);
    Promise.resolve(variantsOf(flagKey))
      .then((names) => {
        variantCache.set(flagKey, Array.isArray(names) ? names.map(String) : []);
        onLoad();
      })
      .catch(() => {});
    return [];
  }

  function prerequisiteRow(p, i) {
    const listId = uid(`${P}-pv`);
    const datalist = h("datalist", { id: listId });
    const fill = () => replace(datalist, knownVariants(p.flag, fill).map((v) => h("option", { value: v })));
    const flagSel = select(
      [{ value: "", label: "— choose a flag —" }, ...candidates.map((f) => ({ value: f.key, label: f.name && f.name !== f.key ? `${f.key} — ${f.name}` : f.key }))],
      p.flag ?? "",
      {
        disabled: readOnly,
        "aria-label": `Prerequisite ${i + 1} flag`,
        on: { change: () => ((p.flag = flagSel.value), fill()) },
      },
    );
    const variant = ctl("input", {
      type: "text",
      list: listId,
      value: p.variant ?? "",
      spellcheck: "false",
      placeholder: "variant",
      "aria-label": `Prerequisite ${i + 1} variant`,
      on: { input: () => (p.variant = variant.value) },
    });
    fill();
    const row = h(
      "div",
      { class: `${P}-prereq` },
      flagSel,
      h("span", { class: `${P}-muted` }, "serves"),
      variant,
      datalist,
      button("✕", () => (state.prerequisites.splice(i, 1), render()), { "aria-label": `Remove prerequisite ${i + 1}`, class: `${P}-btn ${P}-icon` }),
      h("span", { class: `${P}-slot` }),
    );
    p.els = { row, flagSel, variant, slot: row.lastChild };
    return row;
  }

  // --- the whole ---

  function render(focusKey) {
    errors.clear();
    clientProblems.clear();
    serializers.length = 0;

    const offSel = select(variantOptions("— the caller's default —"), state.off_variant ?? "", {
      disabled: readOnly,
      on: { change: () => (state.off_variant = offSel.value || null) },
    });
    const offField = labelled(P, "When off, serve", offSel, `${P}-off`);

    // Default serve (no rule matched).
    const defName = uid(`${P}-def`);
    const json = state.mode === "json";
    const defVariantRadio = ctl("input", { type: "radio", name: defName, checked: json || state.defaultMode === "variant", on: { change: () => ((state.defaultMode = "variant"), syncDefault()) } });
    const defSplitRadio = ctl("input", { type: "radio", name: defName, checked: !json && state.defaultMode === "split", on: { change: () => ((state.defaultMode = "split"), syncDefault()) } });
    const defSel = select(variantOptions("— the caller's default —"), state.default_variant ?? "", {
      disabled: readOnly,
      "aria-label": "Default variant",
      on: { change: () => (state.default_variant = defSel.value || null) },
    });
    const defSplit = splitEditor(state.default_split, "Default split", "d");
    const defaultBox = h(
      "section",
      { class: `${P}-section ${P}-default` },
      h("h3", {}, json ? "When the expression returns null, serve" : "When no rule matches, serve"),
      json
        ? null
        : h("div", { class: `${P}-serve`, role: "radiogroup", "aria-label": "Default serves" }, h("label", {}, defVariantRadio, " a variant"), h("label", {}, defSplitRadio, " a percentage split")),
      defSel,
      json ? null : defSplit.element,
    );
    const syncDefault = () => {
      const split = !json && state.defaultMode === "split";
      defSel.hidden = split;
      defSplit.element.hidden = !split;
      modeSwitch && syncModeSwitch();
    };

    // Rules or JsonLogic.
    let targeting = null;
    let rulesSection;
    let modeSwitch = null;
    const syncModeSwitch = () => {
      if (!modeSwitch) return;
      const empty = json ? state.targetingText.trim() === "" : state.rules.length === 0 && state.defaultMode !== "split";
      modeSwitch.disabled = !empty;
      modeSwitchNote.textContent = empty
        ? ""
        : json
          ? "Clear the expression to switch to rules."
          : "Remove every rule and the default split to switch to a JsonLogic expression.";
    };
    const modeSwitchNote = h("span", { class: `${P}-muted` });
    if (!readOnly) {
      modeSwitch = h(
        "button",
        {
          type: "button",
          class: `${P}-btn`,
          on: {
            click: () => {
              state.mode = json ? "rules" : "json";
              if (state.mode === "json") state.defaultMode = "variant";
              render();
            },
          },
        },
        json ? "Use ordered rules instead" : "Use a JsonLogic expression instead",
      );
    }
    if (json) {
      const area = ctl("textarea", {
        class: `${P}-json ${P}-mono`,
        rows: "14",
        spellcheck: "false",
        value: state.targetingText,
        "aria-label": "JsonLogic targeting expression",
        on: {
          input: () => {
            state.targetingText = area.value;
            checkJson();
            syncModeSwitch();
          },
        },
      });
      const jsonHint = hint(area, P);
      const checkJson = () => {
        const text = state.targetingText.trim();
        let message = null;
        if (text !== "") {
          try {
            const parsed = JSON.parse(text);
            if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) message = "The expression must be a JSON object, e.g. {\"if\": [...]}.";
          } catch (e) {
            message = `Not valid JSON: ${e.message}`;
          }
        }
        problem("targeting", message, jsonHint);
      };
      rulesSection = h(
        "section",
        { class: `${P}-section ${P}-targeting` },
        h("h3", {}, "Targeting (JsonLogic)"),
        h("p", { class: `${P}-muted` }, "The result names the variant served; null serves the default. {\"$ref\": \"segment-key\"} is true for contexts in that segment."),
        area,
        jsonHint.element,
        h("div", { class: `${P}-mode` }, modeSwitch, modeSwitchNote),
      );
      checkJson();
      targeting = area;
    } else {
      const rulesHeading = h("h3", {}, "Rules");
      rulesSection = h(
        "section",
        { class: `${P}-section ${P}-rules` },
        rulesHeading,
        h("p", { class: `${P}-muted` }, "Evaluated top to bottom; the first rule whose clauses all match decides."),
        state.rules.length === 0 ? h("p", { class: `${P}-empty` }, "No rules: every context gets the default below. Add a rule to target some contexts.") : null,
        h("ol", { class: `${P}-rule-list` }, state.rules.map((rule, r) => h("li", {}, ruleEditorOne(rule, r)))),
        state.rules.length < LIMITS.rules
          ? button("+ Add rule", () => {
              state.rules.push({
                id: nextRuleId(),
                description: "",
                clauses: [clauseState({ attribute: "", operator: "in", values: [""] })],
                serve: "variant",
                variant: variantNames[0] ?? null,
                split: splitState(evenSplit(variantNames), variantNames, true),
              });
              render(`rule-${state.rules.length - 1}`);
            }, { class: `${P}-btn ${P}-primary` })
          : null,
        h("div", { class: `${P}-mode` }, modeSwitch, modeSwitchNote),
      );
      rulesSection.dataset.heading = "1";
      rulesSection.els = { rulesHeading };
    }

    // Prerequisites.
    const prereqHeading = h("h3", {}, "Prerequisites");
    const prereqSection = h(
      "section",
      { class: `${P}-section ${P}-prereqs` },
      prereqHeading,
      h("p", { class: `${P}-muted` }, "Served normally only if each of these flags serves the given variant; otherwise the off variant."),
      state.prerequisites.length === 0 ? h("p", { class: `${P}-empty` }, "None.") : null,
      state.prerequisites.map((p, i) => prerequisiteRow(p, i)),
      state.prerequisites.length < LIMITS.prerequisites && candidates.length > 0
        ? button("+ Add prerequisite", () => (state.prerequisites.push({ flag: "", variant: "" }), render()))
        : null,
    );

    const datalist = attributeList(attrListId, [state.rules, ...segmentList.map((s) => s.rules)]);

    replace(element, datalist, h("section", { class: `${P}-section ${P}-offbox` }, offField), rulesSection, defaultBox, prereqSection);
    syncDefault();
    syncModeSwitch();

    serializers.push((reg) => {
      reg.add("/off_variant", offSel);
      const out = { off_variant: state.off_variant };
      if (json) {
        reg.add("/targeting", targeting);
        reg.add("/rules", targeting);
        reg.add("/default_variant", defSel);
        reg.add("/default_split", defSel);
        const text = state.targetingText.trim();
        let value = null;
        if (text !== "") {
          try {
            value = JSON.parse(text);
          } catch {
            value = state.targetingText;
          }
        }
        Object.assign(out, { default_variant: state.default_variant, default_split: null, rules: [], targeting: value });
      } else {
        reg.section("/rules", rulesSection.els.rulesHeading);
        reg.section("/targeting", rulesSection.els.rulesHeading);
        const split = state.defaultMode === "split";
        if (split) {
          out.default_variant = null;
          out.default_split = defSplit.serialize("/default_split", reg);
          reg.add("/default_variant", defSplitRadio, defSplitRadio.parentElement.parentElement);
        } else {
          reg.add("/default_variant", defSel);
          reg.add("/default_split", defSel);
          out.default_variant = state.default_variant;
          out.default_split = null;
        }
        out.rules = state.rules.map((rule, r) => serializeRule(rule, `/rules/${r}`, reg));
        out.targeting = null;
      }
      reg.section("/prerequisites", prereqHeading);
      out.prerequisites = state.prerequisites.map((p, i) => {
        reg.add(`/prerequisites/${i}`, p.els.row, p.els.slot);
        reg.add(`/prerequisites/${i}/flag`, p.els.flagSel, p.els.slot);
        reg.add(`/prerequisites/${i}/variant`, p.els.variant, p.els.slot);
        return { flag: p.flag, variant: p.variant };
      });
      return out;
    });

    focusAfterRender(element, focusKey);
  }

  render();

  /** value(): the EnvConfigPatch body (no `enabled`, no `comment`): every field, so it replaces the config. */
  return handle(element, (reg) => serializers[0](reg));
}

// --- segment rules ---------------------------------------------------------------------------------

/** `key` and every segment that reaches it through segment_match: matching any of them from `key`'s
 * rules would close a cycle, which the server refuses. */
function segmentsReaching(key, segments) {
  const users = new Map();
  for (const s of segments) {
    for (const rule of s.rules || []) {
      for (const c of rule.clauses || []) {
        if (c.operator !== "segment_match") continue;
        for (const v of c.values || []) {
          if (typeof v !== "string") continue;
          if (!users.has(v)) users.set(v, new Set());
          users.get(v).add(s.key);
        }
      }
    }
  }
  const seen = new Set([key]);
  const todo = [key];
  while (todo.length) {
    for (const user of users.get(todo.pop()) || []) {
      if (!seen.has(user)) {
        seen.add(user);
        todo.push(user);
      }
    }
  }
  return seen;
}

/**
 * segmentRulesEditor({segment, rules, segments, readOnly}): a segment's rules (rule_engine SegmentRule:
 * only `clauses`), with the flag rule editor's clause editor.
 *   segment: the key of the segment edited; rules: its SegmentRule[]; segments: SegmentOut[] of the
 *   project (segment_match offers those that close no cycle through this one).
 * → {element, value() (the SegmentRule[] of a SegmentUpdate's `rules`), showErrors(details) (pointers of
 *   that body, e.g. /rules/0/clauses/1/values/0; returns the details left unplaced), clearErrors(),
 *   clientErrors()}
 */
export function segmentRulesEditor({ segment, rules = [], segments = [], readOnly = false }) {
  const all = segments || [];
  const blocked = segmentsReaching(segment, all);
  const segmentList = all.filter((s) => !blocked.has(s.key));
  let counter = 0;
  const nextKey = () => `seg-rule-${(counter += 1)}`;
  const state = { rules: (rules || []).map((r) => ({ key: nextKey(), clauses: (r.clauses || []).map(clauseState) })) };

  const { errors, clientProblems, problem, handle } = editorCore();
  const attrListId = uid(`${P}-attrs`);
  const element = h("div", { class: [P, `${P}-segment-rules`, readOnly && `${P}-readonly`] });
  let serializer = () => [];


  const { button } = controls(readOnly);
  const { clauseList, serializeClauses } = clauseKit({
    readOnly,
    segmentList,
    attrListId,
    problem,
    clientProblems,
    render,
    noSegments: "No segment to choose: a segment cannot match itself or a segment that matches it.",
  });

  function move(r, delta) {
    const to = r + delta;
    if (to < 0 || to >= state.rules.length) return;
    const [rule] = state.rules.splice(r, 1);
    state.rules.splice(to, 0, rule);
    render(`${delta < 0 ? "up" : "down"}-${rule.key}`);
  }

  function ruleBox(rule, r) {
    const legend = h("legend", {}, `Rule ${r + 1}`);
    const { clausesBox, addClause } = clauseList(rule, `r${r}`);
    const tools = readOnly
      ? null
      : ruleTools(button, { r, count: state.rules.length, focusKey: rule.key, label: `rule ${r + 1}`, move, remove: () => (state.rules.splice(r, 1), render()) });
    rule.els = { legend };
    return h("fieldset", { class: `${P}-rule` }, legend, tools, clausesBox, addClause);
  }

  function render(focusKey) {
    errors.clear();
    clientProblems.clear();
    const heading = h("h3", {}, "Rules");
    const section = h(
      "section",
      { class: `${P}-section ${P}-rules` },
      heading,
      h("p", { class: `${P}-muted` }, "A context is in the segment if it matches any rule (every clause of that rule). Excluded keys never are; included keys always are."),
      state.rules.length === 0 ? h("p", { class: `${P}-empty` }, "No rules: only the included keys are in the segment.") : null,
      h("ol", { class: `${P}-rule-list` }, state.rules.map((rule, r) => h("li", {}, ruleBox(rule, r)))),
      state.rules.length < LIMITS.segmentRules
        ? button(
            "+ Add rule",
            () => {
              state.rules.push({ key: nextKey(), clauses: [clauseState({ attribute: "", operator: "in", values: [""] })] });
              render(`rule-${state.rules.length - 1}`);
            },
            { class: `${P}-btn ${P}-primary` },
          )
        : null,
    );
    replace(element, attributeList(attrListId, [state.rules, ...all.map((s) => s.rules)]), section);
    serializer = (reg) => {
      reg.section("/rules", heading);
      return state.rules.map((rule, r) => {
        reg.section(`/rules/${r}`, rule.els.legend);
        return { clauses: serializeClauses(rule, `/rules/${r}`, reg, rule.els.legend) };
      });
    };
    focusAfterRender(element, focusKey);
  }

  render();

  return handle(element, (reg) => serializer(reg));
}
