// Create a flag: key, name, description, tags, type and its variants (typed value editors). It starts off
// in every environment; targeting is set on the flag's page.

import { ApiError, request } from "../api.js";
import { h, replace } from "../dom.js";
import { errorBanner, field, fillErrorBanner, pageHeader, placeErrors, select, textInput, toast } from "../ui.js";
import { DEFAULT_VARIANTS, loadVariantEditor } from "../variants.js";
import { FLAG_TYPES } from "./flags.js";

export function parseTags(text) {
  return [...new Set(text.split(",").map((t) => t.trim()).filter(Boolean))];
}

export async function render(ctx) {
  ctx.title(`New flag · ${ctx.project}`);
  const back = ctx.href("p", ctx.project, "e", ctx.env, "flags");
  if (!ctx.can("writer")) {
    return h("section", { class: "page" }, pageHeader("New flag"), h("p", {}, "Your role (", ctx.session.role, ") cannot create flags. ", h("a", { href: back }, "Back to the flags")));
  }
  const variantEditor = await loadVariantEditor();
  const fields = {
    key: field("Key", textInput({ required: true, maxlength: 128, autofocus: true }), {
      hint: "What SDKs ask for: letters, digits, _ . - (starts with a letter or digit). It cannot change later.",
    }),
    name: field("Name", textInput({ required: true, maxlength: 256 })),
    description: field("Description", h("textarea", { rows: 3, maxlength: 10000 })),
    tags: field("Tags", textInput({ placeholder: "checkout, experiment" }), { hint: "Comma-separated." }),
    type: field("Type", select(FLAG_TYPES.map((t) => [t, t]), { value: "boolean" })),
  };
  const comment = field("Comment (optional)", textInput({ maxlength: 2000 }), { hint: "Saved with version 1 in the history." });
  const variantsHolder = h("div", { class: "variants-holder" });
  let editor = null;
  function buildVariants(type) {
    editor = variantEditor({ type, variants: structuredClone(DEFAULT_VARIANTS[type]) });
    replace(variantsHolder, editor.element);
  }
  buildVariants("boolean");
  fields.type.input.addEventListener("change", () => buildVariants(fields.type.input.value));

  const banner = errorBanner(null);
  const submit = h("button", { type: "submit", class: "primary" }, "Create flag");
  const form = h(
    "form",
    { class: "form card", novalidate: true },
    banner,
    h("div", { class: "grid-2" }, fields.key.element, fields.name.element),
    fields.description.element,
    h("div", { class: "grid-2" }, fields.tags.element, fields.type.element),
    variantsHolder,
    comment.element,
    h("p", { class: "hint" }, "The flag starts off in every environment; its default and off variants are set per environment on the flag's page."),
    h("div", { class: "form-actions" }, h("a", { href: back, class: "button" }, "Cancel"), submit),
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    banner.hidden = true;
    for (const f of Object.values(fields)) f.clear();
    let variants;
    try {
      variants = editor.value();
    } catch (error) {
      fillErrorBanner(banner, error, "Check the variants");
      return;
    }
    const body = {
      key: fields.key.input.value.trim(),
      name: fields.name.input.value.trim() || fields.key.input.value.trim(),
      description: fields.description.input.value,
      tags: parseTags(fields.tags.input.value),
      type: fields.type.input.value,
      variants,
      comment: comment.input.value,
    };
    submit.disabled = true;
    try {
      const { body: flag } = await request("POST", `/projects/${encodeURIComponent(ctx.project)}/flags`, { body });
      toast(`Flag ${flag.key} created`);
      ctx.navigate(ctx.href("p", ctx.project, "e", ctx.env, "flags", flag.key));
    } catch (error) {
      if (error instanceof ApiError && error.status === 409) fields.key.error(error.message);
      const rest = editor.showErrors(placeErrors(error, fields));
      fillErrorBanner(banner, error, "The flag was not created", rest);
      banner.scrollIntoView({ block: "nearest" });
    } finally {
      submit.disabled = false;
    }
  });

  return h("section", { class: "page narrow" }, pageHeader("New flag", `Project ${ctx.project}`), form);
}
