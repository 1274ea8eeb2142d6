// Explain and impact preview on the flag page (issue 17): why a context gets what it gets in an environment
// (POST …/environments/{env}/explain), and how many contexts an edit in the rule editor would move to another
// variant before it is saved (POST …/environments/{env}/preview). Both only read on the server, so a reader
// may explain; the page offers the preview only where the editor can be edited.
//
// Everything the server sends back (context values echoed in the trace, variant and rule names, error
// messages) is the user's or another user's input: it reaches the page through h() as text, never markup.

import { ApiError, request } from "./api.js";
import { h, replace } from "./dom.js";
import { badge, button, displayName, errorBanner, field, fillErrorBanner, infoBanner, select, table } from "./ui.js";

export const DEFAULT_CONTEXT = '{"targeting_key": "user-1"}';

const show = (value) => (value === undefined ? "undefined" : JSON.stringify(value));
const code = (value) => h("code", {}, show(value));
const none = (variant) => (variant === null || variant === undefined ? "(none)" : variant);
const outcome = (matched, yes = "matched", no = "no match") => badge(matched ? yes : no, matched ? "on" : "off");

/**
 * The JSON typed in a field, or null after showing at the field what is wrong with it (so nothing is sent).
 * `expect`: "object" or "array of objects"; `optional`: an empty field is `undefined`, not an error.
 */
export function readJson(f, name, { expect = "object", optional = false } = {}) {
  const text = f.input.value.trim();
  if (!text) {
    if (optional) return undefined;
    f.error(`${name}: required; type a JSON ${expect === "object" ? "object" : "array of objects"}`);
    return null;
  }
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    f.error(`${name}: not valid JSON (${error.message})`);
    return null;
  }
  const kind = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);
  if (expect === "object" && kind(value) !== "object") {
    f.error(`${name}: expected a JSON object, not ${kind(value)}`);
    return null;
  }
  if (expect === "array of objects") {
    if (kind(value) !== "array") {
      f.error(`${name}: expected a JSON array of objects, not ${kind(value)}`);
      return null;
    }
    const bad = value.findIndex((item) => kind(item) !== "object");
    if (bad >= 0) {
      f.error(`${name}: item ${bad} is ${kind(value[bad])}, not an object`);
      return null;
    }
  }
  return value;
}

/** Show each detail whose pointer starts with `prefix` at field `f` (the pointer's rest before its message);
 * returns the other details. */
function placeAt(details, prefix, f, name) {
  const rest = [];
  for (const d of details) {
    const path = d.path || "";
    if (path === prefix || path.startsWith(prefix + "/")) f.error(`${name}${path.slice(prefix.length)}: ${d.message}`);
    else rest.push(d);
  }
  return rest;
}

// --- the trace ----------------------------------------------------------------------------------------

/** The result line of an explanation: value, variant, reason, rule, version, and the error if any. */
export function resultLine(result) {
  return h(
    "div",
    { class: "insight-result", "data-testid": "explain-result" },
    h(
      "p",
      {},
      "Serves ",
      h("code", { "data-testid": "explain-value" }, show(result.value)),
      " — variant ",
      h("strong", { "data-testid": "explain-variant" }, none(result.variant)),
      ", reason ",
      h("code", { "data-testid": "explain-reason" }, result.reason),
      result.rule_id !== null && result.rule_id !== undefined ? [", rule ", h("code", {}, result.rule_id)] : null,
      result.version !== null && result.version !== undefined ? `, version ${result.version}` : null,
    ),
    result.error_code
      ? h("p", { class: "insight-error", "data-testid": "explain-error" }, h("strong", {}, `Error ${result.error_code}`), result.error_message ? `: ${result.error_message}` : null)
      : null,
  );
}

function clauseItem(clause) {
  const segment = clause.operator === "segment_match";
  return h(
    "li",
    { class: "insight-clause", "data-testid": "trace-clause" },
    clause.attribute !== null && clause.attribute !== undefined ? [h("code", {}, clause.attribute), " "] : null,
    clause.negate ? "not " : null,
    h("strong", {}, clause.operator),
    " ",
    h("code", {}, show(clause.values)),
    segment ? null : [" — value seen ", h("code", { class: "insight-seen" }, show(clause.value))],
    " — ",
    outcome(clause.matched, "matched", "no"),
    (clause.segments || []).length ? h("ul", {}, clause.segments.map(segmentItem)) : null,
  );
}

function ruleItem(rule) {
  return h(
    "li",
    { class: "insight-rule", "data-testid": `trace-rule-${rule.index}` },
    `Rule ${rule.index}`,
    rule.id !== null && rule.id !== undefined ? [" ", h("code", {}, rule.id)] : null,
    ": ",
    outcome(rule.matched),
    (rule.clauses || []).length ? h("ul", {}, rule.clauses.map(clauseItem)) : null,
  );
}

const DECISIONS = {
  included: "the targeting key is listed as included",
  excluded: "the targeting key is listed as excluded",
  no_rule: "no rule matched",
  missing: "the segment does not exist",
};

function segmentItem(segment) {
  const decision = segment.decision === "rule" ? `rule ${segment.rule} matched` : DECISIONS[segment.decision] || segment.decision;
  return h(
    "li",
    { class: "insight-segment", "data-testid": "trace-segment" },
    "Segment ",
    h("code", {}, segment.key),
    `: ${decision} — `,
    outcome(segment.matched, "in", "out"),
    (segment.rules || []).length ? h("ul", {}, segment.rules.map(ruleItem)) : null,
  );
}

function splitBlock(split) {
  return h(
    "div",
    { class: "insight-split", "data-testid": "trace-split" },
    h(
      "p",
      {},
      "Split by ",
      h("code", {}, split.bucket_by),
      " = ",
      split.value === null ? h("em", {}, "absent") : h("code", {}, show(split.value)),
      ": ",
      split.bucket === null ? "no bucket" : `bucket ${split.bucket} of ${split.total}`,
      " → ",
      h("strong", {}, none(split.variant)),
    ),
    (split.ranges || []).length
      ? h(
          "ul",
          { class: "insight-ranges" },
          split.ranges.map((r) => {
            const owns = split.bucket !== null && split.bucket >= r.start && split.bucket < r.end;
            return h("li", { class: owns ? "owner" : null }, h("code", {}, r.variant), ` [${r.start}, ${r.end})`, owns ? [" ", badge("owns the bucket", "on")] : null);
          }),
        )
      : null,
  );
}

const PREREQ_STATES = {
  evaluated: "evaluated",
  missing: "the flag does not exist",
  disabled: "the flag is off",
  not_evaluated: "not evaluated",
};

/** A flag's trace as a nested list: prerequisites (each with its own trace), the rules evaluated with their
 * clauses and segments, JsonLogic targeting, and the split that chose the variant. */
export function traceView(trace) {
  const parts = [
    h(
      "p",
      { class: "insight-flag" },
      h("code", {}, trace.flag),
      ` (version ${trace.version}, ${trace.enabled ? "on" : "off"}): served by ${trace.served_by} → `,
      h("strong", {}, none(trace.variant)),
      ` (${trace.reason})`,
    ),
  ];
  if ((trace.prerequisites || []).length) {
    parts.push(
      h("p", { class: "insight-heading" }, "Prerequisites"),
      h(
        "ul",
        {},
        trace.prerequisites.map((p) =>
          h(
            "li",
            { class: "insight-prerequisite", "data-testid": `trace-prerequisite-${p.flag}` },
            h("code", {}, p.flag),
            " must serve ",
            h("code", {}, p.variant),
            `: ${PREREQ_STATES[p.state] || p.state} — `,
            outcome(p.met, "met", "not met"),
            p.trace ? h("div", { class: "insight-nested" }, traceView(p.trace)) : null,
          ),
        ),
      ),
    );
  }
  if ((trace.rules || []).length) {
    parts.push(h("p", { class: "insight-heading" }, "Rules evaluated (in order, until one matches)"), h("ul", {}, trace.rules.map(ruleItem)));
  }
  if (trace.targeting) {
    parts.push(
      h("p", { class: "insight-heading" }, "JsonLogic targeting returned ", code(trace.targeting.result)),
      (trace.targeting.segments || []).length ? h("ul", {}, trace.targeting.segments.map(segmentItem)) : null,
    );
  }
  if (trace.split) parts.push(splitBlock(trace.split));
  return h("div", { class: "insight-trace" }, parts);
}

/** An explanation: the result line, then the trace, or why there is none. */
export function explanationView(answer) {
  return [
    resultLine(answer.result),
    answer.trace
      ? h("div", { "data-testid": "explain-trace" }, traceView(answer.trace))
      : h("p", { class: "muted", "data-testid": "explain-no-trace" }, "No trace: the flag was not evaluated here (it is archived or missing, so SDKs get their default)."),
    h("details", { class: "insight-raw" }, h("summary", {}, "The answer as JSON"), h("pre", { class: "json" }, JSON.stringify(answer, null, 2))),
  ];
}

// --- the Explain panel ------------------------------------------------------------------------------

/**
 * explainPanel({ctx, flagKey, envPath}) → a card: an environment (the page's by default), a context (JSON),
 * an optional caller's default (JSON), an Explain button and the answer. `envPath(env)` is the flag's
 * configuration path in an environment.
 */
export function explainPanel({ ctx, flagKey, envPath }) {
  const envs = ctx.environments.map((e) => [e.key, displayName(e)]);
  const envField = field("Environment", select(envs, { value: ctx.env, "data-testid": "explain-env" }));
  const contextField = field("Context (JSON)", h("textarea", { class: "code", rows: 4, spellcheck: "false", value: DEFAULT_CONTEXT, "data-testid": "explain-context" }), {
    hint: "The evaluation context an SDK would pass: a JSON object.",
  });
  const defaultField = field("Caller's default (JSON, optional)", h("input", { type: "text", class: "code", autocomplete: "off", spellcheck: "false", "data-testid": "explain-default" }), {
    hint: "What the SDK's caller passes as default: served when the evaluation ends in an error.",
  });
  const banner = errorBanner(null);
  const output = h("div", { class: "insight-output", "aria-live": "polite", "data-testid": "explain-output" });
  const run = button("Explain", explain, { class: "primary", "data-testid": "explain-run" });

  async function explain() {
    contextField.clear();
    defaultField.clear();
    banner.hidden = true;
    const context = readJson(contextField, "Context");
    if (context === null) return;
    const body = { context };
    const dflt = defaultField.input.value.trim();
    if (dflt) {
      try {
        body.default = JSON.parse(dflt);
      } catch (error) {
        defaultField.error(`Caller's default: not valid JSON (${error.message})`);
        return;
      }
    }
    const env = envField.input.value;
    run.disabled = true;
    try {
      const { body: answer } = await request("POST", `${envPath(env)}/explain`, { body });
      replace(output, h("p", { class: "muted small" }, `${flagKey} in ${env}, for this context:`), explanationView(answer));
    } catch (error) {
      let rest = error instanceof ApiError ? error.details : [];
      rest = placeAt(rest, "/context", contextField, "Context");
      rest = placeAt(rest, "/default", defaultField, "Caller's default");
      fillErrorBanner(banner, error, `Could not explain ${flagKey} in ${env}`, rest);
      replace(output);
    } finally {
      run.disabled = false;
    }
  }

  const element = h(
    "section",
    { class: "card insight", "aria-labelledby": "explain-h", "data-testid": "explain-panel" },
    h("div", { class: "section-header" }, h("h2", { id: "explain-h" }, "Explain an evaluation"), h("span", { class: "muted small" }, "Evaluates as SDKs would in the environment, and shows why. Nothing is saved.")),
    h("div", { class: "insight-form" }, envField.element, contextField.element, defaultField.element),
    h("div", { class: "form-actions" }, run),
    banner,
    output,
  );
  return { element };
}

// --- the impact preview ---------------------------------------------------------------------------

/**
 * previewControls({path, flagKey, envKey, editor, showEditorErrors}) → {element, button, reset(), stale()}:
 * the "Preview impact" button of the rule editor, an optional textarea of contexts, and the counts.
 * `editor()` is the current rule editor (its value() is the unsaved EnvConfigPatch); 422 details under
 * /config are shown in the editor by `showEditorErrors(details)`, which returns those it could not place.
 */
export function previewControls({ path, flagKey, envKey, editor, showEditorErrors }) {
  const contextsField = field("Contexts to preview over (JSON array, optional)", h("textarea", { class: "code", rows: 4, spellcheck: "false", "data-testid": "preview-contexts" }), {
    hint: 'Empty: the environment\'s stored sample of recently evaluated contexts. E.g. [{"targeting_key": "u1", "country": "de"}]',
  });
  const banner = errorBanner(null);
  const output = h("div", { class: "insight-output", "aria-live": "polite", "data-testid": "preview-output" });
  const run = button("Preview impact", preview, { "data-testid": "preview-impact" });

  async function preview() {
    contextsField.clear();
    banner.hidden = true;
    const current = editor();
    if (current.clearErrors) current.clearErrors();
    let config;
    try {
      config = current.value();
    } catch (error) {
      fillErrorBanner(banner, error, "Check the configuration");
      return;
    }
    const contexts = readJson(contextsField, "Contexts", { expect: "array of objects", optional: true });
    if (contexts === null) return;
    const body = contexts === undefined ? { config } : { config, contexts };
    run.disabled = true;
    try {
      const { body: counts } = await request("POST", `${path}/preview`, { body });
      replace(output, previewView(counts, flagKey, envKey));
    } catch (error) {
      let rest = error instanceof ApiError ? error.details : [];
      rest = placeAt(rest, "/contexts", contextsField, "Contexts");
      const inConfig = rest.filter((d) => (d.path || "").startsWith("/config/"));
      rest = rest.filter((d) => !(d.path || "").startsWith("/config/"));
      if (inConfig.length) {
        const unplaced = showEditorErrors(inConfig.map((d) => ({ ...d, path: d.path.slice("/config".length) })));
        rest = [...rest, ...unplaced];
      }
      fillErrorBanner(banner, error, "Could not preview the change", rest);
      replace(output);
    } finally {
      run.disabled = false;
    }
  }

  const element = h(
    "div",
    { class: "insight-preview", "data-testid": "preview-panel" },
    h("details", { class: "insight-contexts" }, h("summary", {}, "Preview over contexts of your own"), contextsField.element),
    banner,
    output,
  );
  return {
    element,
    button: run,
    /** The editor was rebuilt (saved, reloaded): an earlier preview no longer describes it. */
    reset() {
      banner.hidden = true;
      replace(output);
    },
    /** The editor changed since the preview was made. */
    stale() {
      const summary = output.querySelector("[data-testid=preview-summary]");
      if (summary && !output.querySelector(".insight-stale")) {
        summary.after(h("p", { class: "insight-stale muted small", "data-testid": "preview-stale" }, "The configuration was edited since: preview again to see its impact."));
      }
    },
  };
}

/** The preview's answer: "N of M contexts would change", the transitions, the errors, the note. */
export function previewView(counts, flagKey, envKey) {
  const over = counts.source === "sample" ? "the stored sample of evaluated contexts" : "the contexts you supplied";
  return [
    h(
      "p",
      { class: "insight-summary", "data-testid": "preview-summary" },
      h("strong", {}, `${counts.changed} of ${counts.contexts} context${counts.contexts === 1 ? "" : "s"} would change`),
      ` variant (${counts.unchanged} would not), over ${over}, if this configuration of ${flagKey} in ${envKey} were saved.`,
    ),
    h("p", { class: "muted small", "data-testid": "preview-errors" }, `Evaluation errors: ${counts.errors_before} now, ${counts.errors_after} after. Nothing was saved.`),
    counts.transitions.length
      ? h(
          "div",
          { "data-testid": "preview-transitions" },
          table(
            [
              { label: "From", cell: (t) => h("code", {}, none(t.from)) },
              { label: "To", cell: (t) => h("code", {}, none(t.to)) },
              { label: "Contexts", cell: (t) => String(t.count), class: "num" },
            ],
            counts.transitions,
            { caption: "Changes of variant", rowAttrs: (t) => ({ "data-testid": `transition-${none(t.from)}-${none(t.to)}` }) },
          ),
        )
      : null,
    counts.note ? infoBanner(h("span", { "data-testid": "preview-note" }, counts.note)) : null,
  ];
}
