// One flag: its definition, its on/off state in every environment (toggle, with a confirmation on
// production-like environments), and its targeting in the current environment (the rule editor), saved
// with If-Match; a concurrent change (412) shows what changed and offers to reload and re-apply. Owner, kind
// and removal date are edited with the details; Archive / Unarchive (confirmed) take the flag out of every
// environment and back. An archived flag shows its state read-only (the API refuses changes to it).
// Below: Explain (any environment, any role: it only reads) and, in the editor, Preview impact of the
// unsaved edit (js/insight.js).

import { ApiError, get, getAll, request } from "../api.js";
import { h, replace } from "../dom.js";
import { loadDiffView, loadRuleEditor } from "../fallbacks.js";
import { explainPanel, previewControls } from "../insight.js";
import {
  badge,
  button,
  confirmDialog,
  displayName,
  errorBanner,
  field,
  fillErrorBanner,
  formDialog,
  isProductionLike,
  localInputToRfc3339,
  pageHeader,
  select,
  textInput,
  timeAgo,
  toast,
  whenField,
} from "../ui.js";
import { loadVariantEditor } from "../variants.js";
import { parseTags } from "./flag-new.js";
import { proposeButton, proposeChange } from "./requests.js";

/** The environment has an approval policy: a direct write is refused, the change can be proposed. */
const needsApproval = (error) => error instanceof ApiError && error.status === 409 && error.code === "approval_required";

export async function render(ctx) {
  const flagKey = ctx.params.flag;
  ctx.title(`${flagKey} · Flags`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/flags/${encodeURIComponent(flagKey)}`;
  const envPath = (env) => `${base}/environments/${encodeURIComponent(env)}`;
  const [flagRes, envRes, segments, summaries, ruleEditor, diffView] = await Promise.all([
    get(base),
    get(envPath(ctx.env)),
    getAll(`/projects/${encodeURIComponent(ctx.project)}/segments`),
    getAll(`/projects/${encodeURIComponent(ctx.project)}/flags`),
    loadRuleEditor(),
    loadDiffView(),
  ]);
  let flag = flagRes.body;
  const canWrite = ctx.can("writer") && !flag.archived;
  const banner = errorBanner(null);

  // --- definition ---------------------------------------------------------------------------------
  const definition = h("div", { class: "card definition" });
  function renderDefinition() {
    replace(
      definition,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Name"),
        h("dd", { "data-testid": "flag-name" }, flag.name),
        h("dt", {}, "Description"),
        h("dd", { "data-testid": "flag-description", class: "prewrap" }, flag.description || h("span", { class: "muted" }, "—")),
        h("dt", {}, "Type"),
        h("dd", {}, h("code", {}, flag.type)),
        h("dt", {}, "Tags"),
        h("dd", {}, flag.tags.length ? h("span", { class: "tags" }, flag.tags.map((t) => badge(t, "tag"))) : h("span", { class: "muted" }, "—")),
        h("dt", {}, "Owner"),
        h("dd", { "data-testid": "flag-owner" }, flag.owner || h("span", { class: "muted" }, "—")),
        h("dt", {}, "Kind"),
        h("dd", { "data-testid": "flag-kind" }, flag.kind),
        h("dt", {}, "Removal date"),
        h("dd", { "data-testid": "flag-removal-date" }, flag.removal_date || h("span", { class: "muted" }, "—")),
        h("dt", {}, "Variants"),
        h(
          "dd",
          {},
          h(
            "ul",
            { class: "variant-list" },
            Object.entries(flag.variants).map(([name, value]) => h("li", {}, h("strong", {}, name), " = ", h("code", {}, JSON.stringify(value)))),
          ),
        ),
        h("dt", {}, "Version"),
        h("dd", {}, `v${flag.version}, changed `, timeAgo(flag.updated_at), " · created ", timeAgo(flag.created_at)),
      ),
      canWrite ? h("div", { class: "card-actions" }, button("Edit details", editDetails)) : null,
    );
  }

  async function editDetails() {
    const variantEditor = await loadVariantEditor();
    const variants = variantEditor({ type: flag.type, variants: flag.variants });
    const fields = {
      name: field("Name", textInput({ value: flag.name, maxlength: 256, autofocus: true })),
      description: field("Description", h("textarea", { rows: 3, maxlength: 10000, value: flag.description })),
      tags: field("Tags", textInput({ value: flag.tags.join(", ") }), { hint: "Comma-separated." }),
      owner: field("Owner", textInput({ value: flag.owner, maxlength: 200 }), { hint: "Who answers for this flag." }),
      kind: field("Kind", select([["temporary", "Temporary (meant to be removed)"], ["permanent", "Permanent"]], { value: flag.kind })),
      removal_date: field("Removal date", h("input", { type: "date", value: flag.removal_date || "" }), { hint: "Optional; past it, the flag is reported stale." }),
      comment: field("Comment (optional)", textInput({ maxlength: 2000 })),
    };
    const updated = await formDialog({
      title: `Edit ${flag.key}`,
      fields,
      content: [
        fields.name.element,
        fields.description.element,
        fields.tags.element,
        fields.owner.element,
        fields.kind.element,
        fields.removal_date.element,
        variants.element,
        fields.comment.element,
      ],
      wide: true,
      submitLabel: "Save details",
      submit: async () => {
        const body = {
          name: fields.name.input.value.trim(),
          description: fields.description.input.value,
          tags: parseTags(fields.tags.input.value),
          owner: fields.owner.input.value.trim(),
          kind: fields.kind.input.value,
          removal_date: fields.removal_date.input.value || null,
          variants: variants.value(),
          comment: fields.comment.input.value,
        };
        try {
          return (await request("PATCH", base, { body, ifMatch: `"${flag.version}"` })).body;
        } catch (error) {
          if (error instanceof ApiError) error.details = variants.showErrors(error.details);
          throw error;
        }
      },
    });
    if (updated) {
      toast(`Saved ${updated.key} (v${updated.version})`);
      ctx.reload();
    }
  }

  // --- environments: on/off ------------------------------------------------------------------------
  const envTable = h("div", { class: "table-wrap" });
  function renderEnvironments() {
    replace(
      envTable,
      h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, "State by environment"),
        h("thead", {}, h("tr", {}, ["Environment", "State", "Serves when on", ""].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          ctx.environments.map((env) => {
            const config = flag.environments[env.key] || { enabled: false };
            const on = Boolean(config.enabled);
            const current = env.key === ctx.env;
            return h(
              "tr",
              { "data-testid": `env-row-${env.key}`, class: current ? "current" : null },
              h(
                "th",
                { scope: "row" },
                current ? h("strong", {}, displayName(env)) : h("a", { href: ctx.href("p", ctx.project, "e", env.key, "flags", flag.key) }, displayName(env)),
                isProductionLike(env) ? [" ", badge("production", "warn")] : null,
                env.approvals_required ? [" ", badge(`${env.approvals_required} approval${env.approvals_required === 1 ? "" : "s"}`, "warn", { title: "Changes here are proposed as change requests", "data-testid": `env-policy-${env.key}` })] : null,
              ),
              h("td", {}, badge(on ? "On" : "Off", on ? "on" : "off", { "data-testid": `env-state-${env.key}` })),
              h("td", { class: "small" }, summary(config)),
              h(
                "td",
                { class: "actions-cell" },
                canWrite
                  ? h(
                      "span",
                      { class: "row-actions" },
                      env.approvals_required
                        ? button(on ? "Propose turning off…" : "Propose turning on…", () => proposeToggle(env, !on), { class: "primary", "data-testid": `toggle-${env.key}` })
                        : button(on ? "Turn off" : "Turn on", () => toggle(env, !on), { class: on ? "danger" : "primary", "data-testid": `toggle-${env.key}` }),
                      button("Schedule…", () => scheduleToggle(env, !on), { "aria-label": `Schedule turning ${flag.key} on or off in ${env.key}`, "data-testid": `schedule-${env.key}` }),
                    )
                  : null,
              ),
            );
          }),
        ),
      ),
    );
  }

  function summary(config) {
    const rules = (config.rules || []).length;
    const parts = [];
    if (config.targeting) parts.push("JsonLogic targeting");
    else if (rules) parts.push(`${rules} rule${rules === 1 ? "" : "s"}`);
    if (config.default_split) parts.push("split by default");
    else if (config.default_variant) parts.push(`default ${config.default_variant}`);
    else parts.push("no default variant");
    if (config.off_variant) parts.push(`off ${config.off_variant}`);
    if ((config.prerequisites || []).length) parts.push(`${config.prerequisites.length} prerequisite(s)`);
    return parts.join(" · ");
  }

  /** The environment needs approvals: turning the flag on or off there is proposed, not made. */
  function proposeToggle(env, enabled) {
    return proposeChange(ctx, { env: env.key, kind: "toggle", target: flag.key, body: { enabled }, title: `Turn ${enabled ? "on" : "off"} ${flag.key} in ${env.key}` });
  }

  async function toggle(env, enabled) {
    let comment = "";
    if (isProductionLike(env)) {
      const answer = await confirmDialog({
        title: `Turn ${enabled ? "on" : "off"} ${flag.key} in ${env.name}?`,
        message: h(
          "p",
          {},
          h("strong", {}, env.name),
          " looks like a production environment. Every SDK connected to it will see the change within seconds.",
        ),
        confirmLabel: "Confirm",
        danger: !enabled,
        comment: true,
      });
      if (!answer) return;
      comment = answer.comment;
    }
    try {
      const { body } = await request("POST", `${envPath(env.key)}/toggle`, { body: { enabled, comment } });
      flag = { ...flag, version: body.version, environments: { ...flag.environments, [env.key]: pick(body) } };
      toast(`${flag.key} is ${enabled ? "on" : "off"} in ${env.key}`);
      banner.hidden = true;
      renderEnvironments();
      renderDefinition();
      const again = envTable.querySelector(`[data-testid="toggle-${CSS.escape(env.key)}"]`);
      if (again) again.focus();
      targeting.ownChange(env.key, body);
    } catch (error) {
      fillErrorBanner(banner, error, `Could not turn ${enabled ? "on" : "off"} ${flag.key} in ${env.key}`);
      if (needsApproval(error)) {
        banner.append(button("Propose as a change request", () => proposeToggle(env, enabled), { class: "primary", "data-testid": "propose-change" }));
      }
      toast(`Not changed: ${error.message}`, "error");
    }
  }

  /** Schedule turning the flag on or off in `env` at a time (a scheduled change of kind toggle). */
  async function scheduleToggle(env, enabled) {
    const scheduledBase = `/projects/${encodeURIComponent(ctx.project)}/environments/${encodeURIComponent(env.key)}/scheduled-changes`;
    const fields = {
      body: field("Change", select([["on", "Turn on"], ["off", "Turn off"]], { value: enabled ? "on" : "off" })),
      apply_at: whenField("At", new Date(Date.now() + 3600 * 1000)),
      comment: field("Comment (optional)", textInput({ maxlength: 2000 }), { hint: "Recorded with the change when it is applied." }),
    };
    const created = await formDialog({
      title: `Schedule ${flag.key} in ${env.name}`,
      fields,
      submitLabel: "Schedule",
      submit: async () =>
        (
          await request("POST", scheduledBase, {
            body: {
              kind: "toggle",
              target: flag.key,
              body: { enabled: fields.body.input.value === "on" },
              apply_at: localInputToRfc3339(fields.apply_at.input.value),
              comment: fields.comment.input.value,
            },
          })
        ).body,
    });
    if (created) toast(`Scheduled: turn ${created.body.enabled ? "on" : "off"} ${flag.key} in ${env.key} at ${new Date(created.apply_at).toLocaleString()}`);
  }

  // --- targeting in the current environment ---------------------------------------------------------
  const targeting = targetingSection({
    ctx,
    flag: () => flag,
    env: ctx.envObj,
    initial: envRes.body,
    etag: envRes.etag,
    segments,
    flags: summaries,
    ruleEditor,
    diffView,
    canWrite,
    path: envPath(ctx.env),
    base,
    async onSaved(body) {
      flag = { ...flag, version: body.version, environments: { ...flag.environments, [ctx.env]: pick(body) } };
      try {
        flag = (await get(base)).body; // a conflict may have brought other environments' changes too
      } catch {
        // the saved environment is already shown; the rest refreshes on the next visit
      }
      renderEnvironments();
      renderDefinition();
    },
  });

  async function removeFlag() {
    const ok = await confirmDialog({
      title: `Delete flag ${flag.key}?`,
      message: h("p", {}, "SDKs asking for this flag will get their code default in every environment. Its history stays in the audit log. This cannot be undone."),
      typed: flag.key,
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", base, { ifMatch: `"${flag.version}"` });
      toast(`Flag ${flag.key} deleted`);
      ctx.navigate(ctx.href("p", ctx.project, "e", ctx.env, "flags"));
    } catch (error) {
      fillErrorBanner(banner, error, `Could not delete ${flag.key}`);
    }
  }

  async function setArchived(archived) {
    const answer = await confirmDialog({
      title: `${archived ? "Archive" : "Unarchive"} flag ${flag.key}?`,
      message: h(
        "p",
        {},
        archived
          ? "Every environment stops serving it: SDKs get their code default, as for a missing flag. It is hidden from the flags list; its history stays, and Unarchive restores it as it is now."
          : "Every environment serves it again, with the configuration it had when it was archived.",
      ),
      confirmLabel: archived ? "Archive" : "Unarchive",
      danger: archived,
      comment: true,
    });
    if (!answer) return;
    try {
      const { body } = await request("POST", `${base}/${archived ? "archive" : "unarchive"}`, { body: { comment: answer.comment }, ifMatch: `"${flag.version}"` });
      toast(`Flag ${body.key} ${archived ? "archived" : "unarchived"} (v${body.version})`);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not ${archived ? "archive" : "unarchive"} ${flag.key}`);
    }
  }

  renderDefinition();
  renderEnvironments();
  const archiveButton = ctx.can("writer")
    ? flag.archived
      ? button("Unarchive", () => setArchived(false), { class: "primary", "data-testid": "unarchive-flag" })
      : button("Archive", () => setArchived(true), { class: "ghost", "data-testid": "archive-flag" })
    : null;
  const archivedNote = flag.archived
    ? h("div", { class: "banner warning", role: "status", "data-testid": "archived-banner" }, h("strong", {}, "Archived: "), "served in no environment (SDKs get their code default). Unarchive it to change it.")
    : null;
  const historyLink = h("a", { class: "button", href: ctx.href("p", ctx.project, "e", ctx.env, "flags", flag.key, "history") }, "History");
  return h(
    "section",
    { class: "page" },
    h("p", { class: "breadcrumb" }, h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "flags") }, "Flags"), " / ", flag.key),
    pageHeader(h("span", { class: "flag-title" }, flag.key), flag.name !== flag.key ? flag.name : null, historyLink, archiveButton, ctx.can("writer") ? button("Delete flag", removeFlag, { class: "danger ghost" }) : null),
    archivedNote,
    banner,
    h("div", { class: "two-col" }, h("section", { "aria-labelledby": "envs-h" }, h("h2", { id: "envs-h" }, "Environments"), envTable), h("section", { "aria-labelledby": "def-h" }, h("h2", { id: "def-h" }, "Definition"), definition)),
    targeting.element,
    explainPanel({ ctx, flagKey: flag.key, envPath }).element,
  );
}

function pick(body) {
  const out = {};
  for (const name of ["enabled", "off_variant", "default_variant", "default_split", "rules", "prerequisites", "targeting"]) out[name] = body[name];
  return out;
}

/** The rule editor for one environment with Save (If-Match), inline errors and the 412 flow. */
function targetingSection({ ctx, flag, env, initial, etag, segments, flags, ruleEditor, diffView, canWrite, path, base, onSaved }) {
  const holder = h("div", { class: "editor-holder" });
  const banner = errorBanner(null);
  const conflict = h("div", { class: "conflict", hidden: true });
  const comment = field("Comment", textInput({ maxlength: 2000, placeholder: "Why this change (optional)" }));
  const save = h("button", { type: "button", class: "primary" }, "Save");
  let editor = null;
  let pristine = null;
  // Preview impact: the editor's unsaved value over contexts (nothing saved); only where it can be edited.
  const preview = canWrite
    ? previewControls({ path, flagKey: flag().key, envKey: env.key, editor: () => editor, showEditorErrors: (details) => editor.showErrors(details) })
    : null;
  if (preview) {
    holder.addEventListener("input", () => preview.stale());
    holder.addEventListener("change", () => preview.stale());
  }
  let currentEtag = etag;
  let loadedVersion = initial.version;
  const variantCache = new Map();
  /** Another flag's variant names, for the prerequisite picker (FlagSummary has none). */
  function variantsOf(key) {
    if (!variantCache.has(key)) {
      const path = `/projects/${encodeURIComponent(ctx.project)}/flags/${encodeURIComponent(key)}`;
      variantCache.set(key, get(path).then((r) => Object.keys(r.body.variants), () => []));
    }
    return variantCache.get(key);
  }

  function rebuild(config, newEtag, version) {
    editor = ruleEditor({ flag: flag(), environment: env.key, config, segments, flags, readOnly: !canWrite, variantsOf });
    replace(holder, editor.element);
    if (preview) preview.reset();
    currentEtag = newEtag;
    loadedVersion = version;
    try {
      pristine = JSON.stringify(editor.value());
    } catch {
      pristine = null;
    }
  }

  function isDirty() {
    if (!editor || !canWrite) return false;
    try {
      return JSON.stringify(editor.value()) !== pristine;
    } catch {
      return true;
    }
  }

  async function submit(value, ifMatch) {
    const { body, etag: newEtag } = await request("PATCH", path, { body: { ...value, comment: comment.input.value }, ifMatch });
    return { body, etag: newEtag || `"${body.version}"` };
  }

  function saved(body, newEtag) {
    toast(body.version === loadedVersion ? "Nothing changed" : `Saved: ${flag().key} in ${env.key} is now v${body.version}`);
    comment.input.value = "";
    conflict.hidden = true;
    banner.hidden = true;
    rebuild(pick(body), newEtag, body.version);
    onSaved(body);
  }

  function failed(error, value) {
    if (error instanceof ApiError && error.details.length) {
      const rest = editor.showErrors(error.details);
      fillErrorBanner(banner, error, "The configuration was not saved", rest);
    } else {
      fillErrorBanner(banner, error, "The configuration was not saved");
    }
    if (value && needsApproval(error)) {
      const body = comment.input.value ? { ...value, comment: comment.input.value } : value;
      banner.append(proposeButton(ctx, { env: env.key, kind: "env_config", target: flag().key, body, title: `Change the targeting of ${flag().key} in ${env.key}` }));
    }
  }

  async function onSave() {
    if (editor.clearErrors) editor.clearErrors();
    banner.hidden = true;
    let value;
    try {
      value = editor.value();
    } catch (error) {
      fillErrorBanner(banner, error, "Check the configuration");
      return;
    }
    save.disabled = true;
    try {
      const { body, etag: newEtag } = await submit(value, currentEtag);
      saved(body, newEtag);
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) await showConflict(editedFields(value));
      else failed(error, value);
    } finally {
      save.disabled = false;
    }
  }

  /** The fields of `value` the user changed since the editor was loaded: re-applying only those keeps
   * what the other person changed in the fields this user did not touch. */
  function editedFields(value) {
    let before;
    try {
      before = JSON.parse(pristine);
    } catch {
      return value;
    }
    if (!before) return value;
    return Object.fromEntries(Object.entries(value).filter(([name, v]) => JSON.stringify(v) !== JSON.stringify(before[name])));
  }

  /** Someone saved first: show their change and offer to re-apply ours (`value`: the fields the user
   * edited) on top of it. */
  async function showConflict(value) {
    let fresh;
    try {
      fresh = await get(path);
    } catch (error) {
      failed(error);
      return;
    }
    let changes = null;
    try {
      const { body } = await get(`${base}/diff`, { from: loadedVersion, to: fresh.body.version });
      changes = body.changes;
    } catch {
      changes = null;
    }
    const reapply = button("Reload and re-apply", async () => {
      reapply.disabled = true;
      try {
        const merged = { ...pick(fresh.body), ...value };
        rebuild(merged, fresh.etag || `"${fresh.body.version}"`, fresh.body.version);
        const { body, etag: newEtag } = await submit(value, currentEtag);
        saved(body, newEtag);
      } catch (error) {
        if (error instanceof ApiError && error.status === 412) await showConflict(value);
        else {
          conflict.hidden = true;
          failed(error);
        }
      } finally {
        reapply.disabled = false;
      }
    }, { class: "primary" });
    const discard = button("Discard my edit", () => {
      conflict.hidden = true;
      rebuild(pick(fresh.body), fresh.etag || `"${fresh.body.version}"`, fresh.body.version);
      toast("Showing the current configuration");
    });
    replace(
      conflict,
      h(
        "div",
        { class: "banner warning", role: "alert", "data-testid": "conflict" },
        h("strong", {}, "Someone else changed this flag while you were editing"),
        h("p", {}, `You started from version ${loadedVersion}; it is now version ${fresh.body.version}. Their change:`),
        changes ? diffView(changes) : h("p", { class: "muted" }, "(the difference could not be loaded)"),
        h("p", {}, "Re-apply sends your edit again on top of the current version (your fields replace theirs)."),
        h("div", { class: "form-actions" }, discard, reapply),
      ),
    );
    conflict.hidden = false;
    reapply.focus();
  }

  /** Schedule the editor's current configuration (a scheduled change of kind env_config): checked by the
   * server now as if saved now; errors under /body are shown in the editor like a save's. */
  async function onSaveLater() {
    if (editor.clearErrors) editor.clearErrors();
    banner.hidden = true;
    let value;
    try {
      value = editor.value();
    } catch (error) {
      fillErrorBanner(banner, error, "Check the configuration");
      return;
    }
    const scheduledBase = `/projects/${encodeURIComponent(ctx.project)}/environments/${encodeURIComponent(env.key)}/scheduled-changes`;
    const fields = {
      apply_at: whenField("At", new Date(Date.now() + 3600 * 1000)),
      comment: field("Comment (optional)", textInput({ maxlength: 2000, value: comment.input.value })),
    };
    const created = await formDialog({
      title: `Save the targeting of ${flag().key} in ${env.name} at a time`,
      intro: h("p", { class: "muted" }, "The configuration in the editor now is applied then (if nothing it sets changed meanwhile)."),
      fields,
      submitLabel: "Schedule",
      submit: async () => {
        try {
          return (
            await request("POST", scheduledBase, {
              body: { kind: "env_config", target: flag().key, body: value, apply_at: localInputToRfc3339(fields.apply_at.input.value), comment: fields.comment.input.value },
            })
          ).body;
        } catch (error) {
          if (error instanceof ApiError) {
            const inBody = error.details.filter((d) => (d.path || "").startsWith("/body/")).map((d) => ({ ...d, path: d.path.slice("/body".length) }));
            const rest = error.details.filter((d) => !(d.path || "").startsWith("/body/"));
            if (inBody.length) {
              const unplaced = editor.showErrors(inBody);
              error.details = [...rest, ...unplaced, { path: "", message: "The configuration has problems; they are shown in the editor." }];
            }
          }
          throw error;
        }
      },
    });
    if (created) toast(`Scheduled: the targeting of ${flag().key} in ${env.key} at ${new Date(created.apply_at).toLocaleString()}`);
  }

  save.addEventListener("click", onSave);
  rebuild(pick(initial), etag, initial.version);
  const element = h(
    "section",
    { class: "card targeting", "aria-labelledby": "targeting-h" },
    h(
      "div",
      { class: "section-header" },
      h("h2", { id: "targeting-h" }, "Targeting in ", h("span", { class: "env-name" }, env.name)),
      isProductionLike(env) ? badge("production", "warn") : null,
      h("span", { class: "muted small" }, "Other environments: pick one in the header or the table above."),
    ),
    conflict,
    banner,
    holder,
    canWrite
      ? [h("div", { class: "save-bar" }, comment.element, save, button("Save at a time…", onSaveLater, { "data-testid": "save-later" }), preview.button), preview.element]
      : flag().archived
        ? h("p", { class: "muted" }, "Read-only: the flag is archived.")
        : h("p", { class: "muted" }, "Read-only: your role (", ctx.session.role, ") cannot change targeting."),
  );
  /** This page changed the flag (a toggle): another environment's change cannot conflict with an edit
   * here, so the editor just moves to the new version; a toggle of this environment rebuilds the editor
   * unless it holds an edit (then saving meets the 412 flow, which shows the toggle). */
  function ownChange(envKey, body) {
    if (envKey !== env.key) {
      if (loadedVersion === body.version - 1) {
        currentEtag = `"${body.version}"`;
        loadedVersion = body.version;
      }
    } else if (!isDirty()) {
      rebuild(pick(body), `"${body.version}"`, body.version);
    }
  }

  return { element, ownChange };
}

