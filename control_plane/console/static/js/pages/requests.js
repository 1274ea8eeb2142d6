// Change requests of one environment: a list with a status filter (open first), each row its title, what it
// changes (kind and a link to the target), its author's key prefix, approvals given of those required, status
// and age. Also the "Propose as a change request" dialog other pages offer when a direct write meets 409
// approval_required (the environment has an approval policy): it POSTs the same change as a request and
// opens the request's page.

import { get, request } from "../api.js";
import { h, replace } from "../dom.js";
import {
  badge,
  button,
  emptyState,
  errorBanner,
  field,
  formDialog,
  pageHeader,
  select,
  showMore,
  table,
  textInput,
  timeAgo,
  toast,
} from "../ui.js";
import { describeChange } from "./scheduled.js";

const STATUSES = [
  ["open", "Open"],
  ["approved", "Approved"],
  ["scheduled", "Scheduled"],
  ["applied", "Applied"],
  ["rejected", "Rejected"],
  ["withdrawn", "Withdrawn"],
  ["failed", "Failed"],
  ["", "All"],
];
const STATUS_KINDS = { open: "warn", approved: "on", scheduled: "warn", applied: "on", rejected: "error", withdrawn: "off", failed: "error" };

/** The filter survives moving between pages in one visit. */
const view = { status: "open" };

export function requestsPath(ctx) {
  return `/projects/${encodeURIComponent(ctx.project)}/environments/${encodeURIComponent(ctx.env)}/change-requests`;
}

export function statusBadge(cr) {
  return badge(cr.status, STATUS_KINDS[cr.status] || "", { "data-testid": `cr-status-${cr.id}` });
}

const SEGMENT_KINDS = new Set(["segment", "segment_rollback"]);

/** A link to what a request changes (its flag's or segment's page in this environment). */
export function targetLink(ctx, cr) {
  const kind = SEGMENT_KINDS.has(cr.kind) ? "segments" : "flags";
  return h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, kind, cr.target) }, cr.target);
}

/**
 * Offer the change the server refused (409 approval_required) as a change request: a dialog with a title
 * (and a description), then POST {kind, target, body, title, description} and go to the request's page.
 * `ctx` is a page context whose project/env is where the change was made (`env` overrides it).
 */
export async function proposeChange(ctx, { env, kind, target, body, title }) {
  const scope = { ...ctx, env: env || ctx.env };
  const fields = {
    title: field("Title", textInput({ value: title, maxlength: 200, required: true })),
    description: field("Description", h("textarea", { rows: 3, maxlength: 10000 }), { hint: "Why; reviewers read it." }),
  };
  const created = await formDialog({
    title: `Propose a change to ${target} in ${scope.env}`,
    intro: h("p", {}, "This environment needs approvals: the change is proposed as a change request (", describeChange({ kind, body }), " ", h("code", {}, target), "); it applies once approved."),
    fields,
    submitLabel: "Propose",
    submit: async () =>
      (
        await request("POST", requestsPath(scope), {
          body: { kind, target, body, title: fields.title.input.value, description: fields.description.input.value },
        })
      ).body,
  });
  if (created) {
    toast(`Change request #${created.id} opened`);
    ctx.navigate(ctx.href("p", scope.project, "e", scope.env, "requests", created.id));
  }
  return created;
}

/** A "Propose as a change request" button for a banner that shows a 409 approval_required. */
export function proposeButton(ctx, change) {
  return button("Propose as a change request", () => proposeChange(ctx, change), { class: "primary", "data-testid": "propose-change" });
}

export async function render(ctx) {
  ctx.title(`Change requests · ${ctx.project}/${ctx.env}`);
  const base = requestsPath(ctx);
  const banner = errorBanner(null);
  const holder = h("div", {});
  let items = [];
  let nextCursor = null;

  const columns = [
    { label: "Title", cell: (cr) => h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "requests", cr.id), "data-testid": `cr-link-${cr.id}` }, cr.title) },
    { label: "Changes", cell: (cr) => h("span", {}, h("code", {}, cr.kind), " ", targetLink(ctx, cr), h("br", {}), h("span", { class: "muted small" }, describeChange(cr))) },
    { label: "Author", cell: (cr) => h("code", {}, `${cr.author_key_prefix}…`) },
    { label: "Approvals", cell: (cr) => h("span", { "data-testid": `cr-approvals-${cr.id}` }, `${cr.approvals}/${cr.approvals_required}`) },
    { label: "Status", cell: statusBadge },
    { label: "Age", cell: (cr) => h("span", { title: cr.created_at }, timeAgo(cr.created_at)) },
  ];

  async function load(cursor) {
    const { body } = await get(base, { status: view.status || null, cursor, limit: 50 });
    return body;
  }

  function show() {
    const label = STATUSES.find(([v]) => v === view.status)[1].toLowerCase();
    replace(
      holder,
      items.length
        ? table(columns, items, { rowAttrs: (cr) => ({ "data-testid": `cr-row-${cr.id}` }), caption: "Change requests" })
        : emptyState(view.status ? `No ${label} change requests in ${ctx.env}` : `No change requests in ${ctx.env} yet`, "a change to an environment that needs approvals is proposed from the flag's page"),
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

  const filter = select(STATUSES, { value: view.status, id: "requests-status" });
  filter.addEventListener("change", () => {
    view.status = filter.value;
    ctx.reload();
  });
  const required = ctx.envObj ? ctx.envObj.approvals_required : 0;
  return h(
    "section",
    { class: "page" },
    pageHeader(
      "Change requests",
      `Project ${ctx.project} · environment ${ctx.env} · ${required ? `${required} approval${required === 1 ? "" : "s"} required` : "no approval policy"}`,
      h("label", { for: "requests-status" }, "Status "),
      filter,
      button("Refresh", () => ctx.reload()),
    ),
    banner,
    holder,
  );
}
