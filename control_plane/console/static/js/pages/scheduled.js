// Scheduled changes of one environment: what will happen (or happened) when, in words, with a status filter
// (pending first). Writers reschedule (a local date-time sent with the browser's UTC offset) or cancel
// (confirmed) a pending change; a failed one shows its code and message. A pending change whose time has
// come is read again every few seconds, so it turns "applied" or "failed" in place without a reload.

import { get, request } from "../api.js";
import { h, replace } from "../dom.js";
import {
  badge,
  button,
  confirmDialog,
  emptyState,
  errorBanner,
  fillErrorBanner,
  formDialog,
  formatTime,
  localInputToRfc3339,
  pageHeader,
  select,
  showMore,
  table,
  timeAgo,
  toast,
  whenField,
} from "../ui.js";

const STATUSES = [
  ["pending", "Pending"],
  ["applied", "Applied"],
  ["failed", "Failed"],
  ["cancelled", "Cancelled"],
  ["", "All"],
];
const POLL_MS = 3000;
const MAX_REREAD = 10; // due changes read again per poll (the scheduler applies up to 100 a pass)
const FIELD_WORDS = {
  enabled: "on/off",
  off_variant: "off variant",
  default_variant: "default variant",
  default_split: "default split",
  rules: "rules",
  prerequisites: "prerequisites",
  targeting: "JsonLogic targeting",
  name: "name",
  description: "description",
  included: "included keys",
  excluded: "excluded keys",
};

/** The filter survives moving between pages in one visit. */
const view = { status: "pending" };

/** What a scheduled change does, in words: "turn on", "set rules, default variant", "roll back to v3". */
export function describeChange(change) {
  const body = change.body || {};
  switch (change.kind) {
    case "toggle":
      return body.enabled ? "turn on" : "turn off";
    case "rollback":
    case "segment_rollback":
      return `roll back to v${body.version}`;
    case "env_config":
    case "segment": {
      const names = Object.keys(body).filter((k) => k !== "comment");
      if (!names.length) return "change nothing";
      if (names.length === 1 && names[0] === "enabled") return body.enabled ? "turn on" : "turn off";
      return "set " + names.map((k) => FIELD_WORDS[k] || k).join(", ");
    }
    default:
      return change.kind;
  }
}

const isSegment = (change) => change.kind === "segment" || change.kind === "segment_rollback";

function statusCell(change) {
  const kinds = { pending: "warn", applied: "on", failed: "error", cancelled: "off" };
  const parts = [badge(change.status, kinds[change.status] || "", { "data-testid": `status-${change.id}` })];
  if (change.status === "applied" && change.applied_version !== null) parts.push(" ", h("span", { class: "muted small" }, `v${change.applied_version}`));
  if (change.failure) {
    parts.push(
      h(
        "div",
        { class: "failure small", "data-testid": `failure-${change.id}` },
        h("code", {}, change.failure.code),
        ": ",
        h("span", { class: "prewrap" }, change.failure.message),
        change.failure.details.length
          ? h("ul", {}, change.failure.details.map((d) => h("li", {}, d.path ? [h("code", {}, d.path), ": "] : null, d.message)))
          : null,
      ),
    );
  }
  return h("div", {}, parts);
}

export async function render(ctx) {
  ctx.title(`Scheduled · ${ctx.project}/${ctx.env}`);
  const base = `/projects/${encodeURIComponent(ctx.project)}/environments/${encodeURIComponent(ctx.env)}/scheduled-changes`;
  const canWrite = ctx.can("writer");
  const banner = errorBanner(null);
  const holder = h("div", {});
  let items = [];
  let nextCursor = null;
  let shownJson = null;

  async function load(cursor) {
    const { body } = await get(base, { status: view.status || null, cursor, limit: 50 });
    return body;
  }

  async function reschedule(change) {
    const fields = { apply_at: whenField("Apply at", change.apply_at) };
    const updated = await formDialog({
      title: `Reschedule: ${describeChange(change)} ${change.target}`,
      fields,
      submitLabel: "Reschedule",
      submit: async () => (await request("PATCH", `${base}/${change.id}`, { body: { apply_at: localInputToRfc3339(fields.apply_at.input.value) } })).body,
    });
    if (updated) {
      toast(`Rescheduled for ${formatTime(updated.apply_at)}`);
      ctx.reload();
    }
  }

  async function cancel(change) {
    const ok = await confirmDialog({
      title: `Cancel this scheduled change?`,
      message: h("p", {}, "It will not ", describeChange(change), " ", h("code", {}, change.target), ` in ${ctx.env} at ${formatTime(change.apply_at)}. This cannot be undone; schedule it again if needed.`),
      confirmLabel: "Cancel the change",
      danger: true,
    });
    if (!ok) return;
    try {
      await request("POST", `${base}/${change.id}/cancel`);
      toast("Scheduled change cancelled");
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, "Could not cancel the scheduled change");
    }
  }

  function targetLink(change) {
    const parts = isSegment(change) ? ["p", ctx.project, "e", ctx.env, "segments", change.target] : ["p", ctx.project, "e", ctx.env, "flags", change.target];
    return h("a", { href: ctx.href(...parts) }, change.target);
  }

  const columns = [
    { label: "Kind", cell: (c) => h("code", {}, c.kind) },
    { label: "Target", cell: targetLink },
    {
      label: "Does",
      cell: (c) => h("div", {}, h("span", { "data-testid": `does-${c.id}` }, describeChange(c)), c.comment ? h("div", { class: "muted small prewrap" }, c.comment) : null),
    },
    { label: "When", class: "when-cell", cell: (c) => h("span", {}, formatTime(c.apply_at), h("br", {}), h("span", { class: "muted small" }, timeAgo(c.apply_at))) },
    { label: "Scheduled by", cell: (c) => h("span", {}, h("code", {}, `${c.created_by_key_prefix}…`), h("br", {}), h("span", { class: "muted small" }, timeAgo(c.created_at))) },
    { label: "Status", cell: statusCell },
    canWrite
      ? {
          label: h("span", { class: "visually-hidden" }, "Actions"),
          class: "actions-cell wrap",
          cell: (c) =>
            c.status === "pending"
              ? h(
                  "span",
                  { class: "row-actions" },
                  button("Reschedule", () => reschedule(c), { "aria-label": `Reschedule change ${c.id}`, "data-testid": `reschedule-${c.id}` }),
                  button("Cancel", () => cancel(c), { class: "danger ghost", "aria-label": `Cancel change ${c.id}`, "data-testid": `cancel-${c.id}` }),
                )
              : null,
        }
      : null,
  ].filter(Boolean);

  function show() {
    const json = JSON.stringify([items, nextCursor]);
    if (json === shownJson) return;
    shownJson = json;
    const label = STATUSES.find(([v]) => v === view.status)[1].toLowerCase();
    replace(
      holder,
      items.length
        ? table(columns, items, { rowAttrs: (c) => ({ "data-testid": `scheduled-row-${c.id}`, "data-target": c.target }), caption: "Scheduled changes" })
        : emptyState(
            view.status ? `No ${label} changes in ${ctx.env}` : `Nothing scheduled in ${ctx.env} yet`,
            "schedule one from a flag's page (Schedule… beside its toggle, or Save at a time… under its targeting)",
          ),
      showMore(nextCursor, load, banner, (page) => {
        items = [...items, ...page.items];
        nextCursor = page.next_cursor;
        show();
      }),
    );
  }

  const first = await load(null);
  items = first.items;
  nextCursor = first.next_cursor;
  show();

  // While the page is shown, read again each pending change that is due (its time has come), so its
  // outcome appears in place, even under the "pending" filter; changes not yet due cannot have moved
  // unless someone rescheduled or cancelled them (Refresh shows that).
  const timer = setInterval(async () => {
    if (!holder.isConnected) {
      clearInterval(timer);
      return;
    }
    const due = items.filter((c) => c.status === "pending" && new Date(c.apply_at).getTime() <= Date.now()).slice(0, MAX_REREAD);
    if (document.hidden || !due.length) return;
    try {
      const fresh = new Map((await Promise.all(due.map((c) => get(`${base}/${c.id}`)))).map((r) => [r.body.id, r.body]));
      if (!holder.isConnected) return;
      items = items.map((c) => fresh.get(c.id) || c);
      show();
    } catch {
      // keep the last answer; Refresh shows the error
    }
  }, POLL_MS);

  const filter = select(STATUSES, { value: view.status, id: "scheduled-status" });
  filter.addEventListener("change", () => {
    view.status = filter.value;
    ctx.reload();
  });
  return h(
    "section",
    { class: "page" },
    pageHeader(
      "Scheduled changes",
      `Project ${ctx.project} · environment ${ctx.env} · times in your local time`,
      h("label", { for: "scheduled-status" }, "Status "),
      filter,
      button("Refresh", () => ctx.reload()),
    ),
    banner,
    holder,
    canWrite ? null : h("p", { class: "muted" }, "Read-only: your role (", ctx.session.role, ") cannot reschedule or cancel."),
  );
}
