// Dev harness of the editor components (no server needed): sample data, "Show value", sample errors.
// Tests drive it through window.fyHarness (mount any data, read value(), place errors).

import { h, replace } from "../js/dom.js";
import { ruleEditor, segmentRulesEditor } from "../js/components/rule-editor.js";
import { variantEditor } from "../js/components/variant-editor.js";
import { diffView } from "../js/components/diff.js";

const XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>';

export const SAMPLE = {
  flag: {
    key: "checkout-flow",
    name: "Checkout flow",
    description: "",
    tags: [],
    type: "string",
    variants: { control: "v1", treatment: "v2", holdout: "none" },
    salt: "s",
    version: 3,
  },
  environment: "prod",
  config: {
    enabled: true,
    off_variant: "control",
    default_variant: null,
    default_split: { variations: [{ variant: "control", weight: 5000 }, { variant: "treatment", weight: 5000 }], bucket_by: "targeting_key", weight_unit: "basis_points" },
    rules: [
      {
        id: "beta-testers",
        description: "Internal beta " + XSS,
        clauses: [
          { attribute: null, operator: "segment_match", values: ["beta"], negate: false },
          { attribute: "email", operator: "ends_with", values: ["@example.com"], negate: false },
        ],
        variant: "treatment",
        split: null,
      },
      {
        id: "new-apps",
        description: "",
        clauses: [
          { attribute: "app_version", operator: "semver_gte", values: ["2.4.0"], negate: false },
          { attribute: "country", operator: "in", values: ["DE", "FR", 7], negate: true },
        ],
        variant: null,
        split: { variations: [{ variant: "control", weight: 2500 }, { variant: "treatment", weight: 7500 }], bucket_by: "targeting_key", weight_unit: "basis_points" },
      },
    ],
    prerequisites: [{ flag: "new-cart", variant: "on" }],
    targeting: null,
  },
  segments: [
    { key: "beta", name: "Beta testers", description: "", included: ["u1"], excluded: [], rules: [{ clauses: [{ attribute: "plan", operator: "eq", values: ["beta"], negate: false }] }], version: 1 },
    { key: "staff", name: "Staff " + XSS, description: "", included: [], excluded: [], rules: [], version: 1 },
  ],
  flags: [
    { key: "new-cart", name: "New cart", type: "boolean", enabled: { prod: true } },
    { key: "dark-mode", name: "Dark mode", type: "boolean", enabled: { prod: false } },
  ],
};

export const TARGETING_SAMPLE = {
  flag: { key: "pricing", name: "Pricing", type: "string", variants: { cheap: "9", pricey: "19" }, version: 1 },
  environment: "prod",
  config: {
    enabled: true,
    off_variant: null,
    default_variant: "cheap",
    default_split: null,
    rules: [],
    prerequisites: [],
    targeting: { if: [{ $ref: "beta" }, "pricey", null] },
  },
  segments: SAMPLE.segments,
  flags: SAMPLE.flags,
};

export const SEGMENT_SAMPLE = {
  segment: "gamma",
  rules: [
    {
      clauses: [
        { attribute: "email", operator: "ends_with", values: ["@example.com", "@example.org"], negate: false },
        { attribute: "plan", operator: "in", values: ["pro", 3, true], negate: true },
      ],
    },
    { clauses: [{ attribute: null, operator: "segment_match", values: ["beta"], negate: false }] },
    {
      clauses: [
        { attribute: "app.version", operator: "semver_gte", values: ["2.4.0"], negate: false },
        { attribute: "signup", operator: "before", values: ["2026-01-31T12:00:00Z"], negate: false },
        { attribute: "beta_opt_in", operator: "exists", values: [], negate: false },
      ],
    },
  ],
  segments: SAMPLE.segments,
};

const SEGMENT_ERRORS = [
  { path: "/rules/0/clauses/0/values/1", message: "sample: lands on the second value of rule 1's first clause" },
  { path: "/rules", message: "segment cycle: gamma -> beta -> gamma" },
  { path: "/name", message: "not an editor field: returned unplaced" },
];

const SAMPLE_ERRORS = [
  { path: "/rules/0/clauses/1/values/0", message: "operator ends_with compares strings; 3 is not one" },
  { path: "/rules/1/split/variations", message: "weights sum to 9000; basis points must sum to 10000" },
  { path: "/default_split/variations/0/weight", message: "Input should be greater than or equal to 0" },
  { path: "/prerequisites/0/variant", message: "flag 'new-cart' has no variant 'maybe'" },
  { path: "/targeting/if/0", message: "no field here in rules mode: lands on the rules heading" },
  { path: "/comment", message: "not an editor field: returned unplaced" },
];

const VARIANT_ERRORS = [{ path: "/variants/treatment", message: "value 1 is not of the flag's type string" }];

const DIFF_SAMPLE = [
  { op: "replace", path: "/environments/prod/rules/0/variant", old: "control", value: "treatment" },
  { op: "add", path: "/environments/prod/rules/1", old: null, value: { id: "r2", clauses: [{ attribute: "email", operator: "matches", values: [".*@x\\.io$"] }] } },
  { op: "remove", path: "/variants/a~1b", old: XSS, value: null },
  { op: "replace", path: "/description", old: "old", value: XSS },
];

const variantCatalog = { "new-cart": ["on", "off"], "dark-mode": ["enabled", "disabled"] };

const state = { editor: null, variants: null, data: null, segment: null, segmentData: null };

function show(value) {
  document.getElementById("output").textContent = JSON.stringify(value, null, 2);
}

function mount(data) {
  state.data = data;
  state.editor = ruleEditor({ ...data, variantsOf: (key) => Promise.resolve(variantCatalog[key] || []) });
  replace(document.getElementById("rule-editor"), state.editor.element);
  document.getElementById("re-title").textContent = `${data.flag.key} in ${data.environment}${data.readOnly ? " (read-only)" : ""}`;
  replace(document.getElementById("unplaced"));
  show(null);
  return state.editor;
}

function showErrors(details) {
  const unplaced = state.editor.showErrors(details);
  replace(
    document.getElementById("unplaced"),
    unplaced.length ? h("ul", {}, unplaced.map((d) => h("li", {}, `${d.path}: ${d.message}`))) : null,
  );
  return unplaced;
}

window.fyHarness = {
  SAMPLE,
  SEGMENT_SAMPLE,
  TARGETING_SAMPLE,
  mount,
  value: () => state.editor.value(),
  showErrors,
  clearErrors: () => state.editor.clearErrors(),
  clientErrors: () => state.editor.clientErrors(),
  variants: () => state.variants,
  /** Mount the segment-rules editor ({segment, rules, segments, readOnly}); returns it. */
  mountSegment(data) {
    state.segmentData = data;
    state.segment = segmentRulesEditor(data);
    replace(document.getElementById("segment-rules"), state.segment.element);
    return state.segment;
  },
  segment: () => state.segment,
  mountVariants(opts) {
    state.variants = variantEditor(opts);
    replace(document.getElementById("variant-editor"), state.variants.element);
    return state.variants;
  },
  diff(changes) {
    replace(document.getElementById("diff"), diffView(changes));
  },
};

const button = (label, onClick) => h("button", { type: "button", on: { click: onClick } }, label);
replace(
  document.getElementById("controls"),
  button("Show value", () => show(state.editor.value())),
  button("Show sample errors", () => showErrors(SAMPLE_ERRORS)),
  button("Clear errors", () => state.editor.clearErrors()),
  button("Rules sample", () => mount(SAMPLE)),
  button("JsonLogic sample", () => mount(TARGETING_SAMPLE)),
  button("Read-only", () => mount({ ...state.data, readOnly: true })),
  button("Show variants", () => show(state.variants.value())),
  button("Variant errors", () => state.variants.showErrors(VARIANT_ERRORS)),
  button("Segment sample", () => window.fyHarness.mountSegment(SEGMENT_SAMPLE)),
  button("Show segment rules", () => state.segment && show(state.segment.value())),
  button("Segment errors", () => state.segment && show(state.segment.showErrors(SEGMENT_ERRORS))),
  button("Segment read-only", () => window.fyHarness.mountSegment({ ...(state.segmentData || SEGMENT_SAMPLE), readOnly: true })),
  button("Dark mode", () => document.documentElement.classList.toggle("dark")),
);

const params = new URLSearchParams(location.search);
mount(params.get("sample") === "targeting" ? TARGETING_SAMPLE : SAMPLE);
window.fyHarness.mountVariants({ type: "string", variants: SAMPLE.flag.variants });
// Mounted on demand only: the flag editor's tests address its rules and buttons page-wide.
if (params.get("segment")) window.fyHarness.mountSegment(SEGMENT_SAMPLE);
window.fyHarness.diff(DIFF_SAMPLE);
if (params.get("dark")) document.documentElement.classList.add("dark");
if (params.get("errors")) showErrors(SAMPLE_ERRORS);
if (params.get("empty")) window.fyHarness.diff([]);
document.body.dataset.ready = "1";
