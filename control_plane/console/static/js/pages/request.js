// One change request: its title and description, what it changes, the diff against the current state (what
// applying it now would do), its events (comments, approvals and rejections: who, when, which revision;
// all as text), and the actions its state and the signed-in key allow: Comment, Approve / Reject (sending the
// revision shown, so a request edited meanwhile is refused, not approved unseen), Withdraw (its author),
// Rebase (after the server said rebase_required, or when the target moved), Apply now or at a local time
// (sent with the browser's UTC offset). The server decides; its refusals are shown in words.

import { ApiError, get, request } from "../api.js";
import { h, replace } from "../dom.js";
import { loadDiffView } from "../fallbacks.js";
import {
  button,
  confirmDialog,
  errorBanner,
  fillErrorBanner,
  formatTime,
  formDialog,
  localInputToRfc3339,
  pageHeader,
  timeAgo,
  toast,
  whenField,
} from "../ui.js";
import { describeChange } from "./scheduled.js";
import { requestsPath, statusBadge, targetLink } from "./requests.js";

const ACTION_WORDS = { comment: "commented", approve: "approved", reject: "rejected" };

/** What a refusal means for the person who met it (the server's message follows). */
const REFUSALS = {
  self_approval: "You cannot approve your own change request: someone else (another owner) must approve it.",
  rebase_required: "The target changed since this request was written: its author must rebase it (then it needs approving again).",
  approval_required: "This request does not have the approvals it needs yet.",
};

function refusalTitle(error, fallback) {
  return error instanceof ApiError && REFUSALS[error.code] ? REFUSALS[error.code] : fallback;
}

function eventItem(event) {
  return h(
    "li",
    { class: `cr-event cr-event-${event.action}`, "data-testid": `cr-event-${event.id}` },
    h(
      "div",
      { class: "cr-event-head" },
      h("strong", {}, event.owner),
      " ",
      h("code", {}, `${event.key_prefix}…`),
      ` ${ACTION_WORDS[event.action] || event.action} revision ${event.revision} · `,
      h("span", { title: formatTime(event.created_at) }, timeAgo(event.created_at)),
    ),
    event.body ? h("p", { class: "prewrap", "data-testid": `cr-event-body-${event.id}` }, event.body) : null,
  );
}

export async function render(ctx) {
  const id = ctx.params.request;
  const path = `${requestsPath(ctx)}/${encodeURIComponent(id)}`;
  const [{ body: cr }, diffView] = await Promise.all([get(path), loadDiffView()]);
  ctx.title(`Change request #${cr.id} · ${cr.title}`);
  const canWrite = ctx.can("writer");
  const isAuthor = ctx.session.key_id === cr.author_key_id;
  const open = cr.status === "open" || cr.status === "approved";
  const banner = errorBanner(null);
  const rebaseHolder = h("span", {});
  const comment = h("textarea", { id: "cr-comment", rows: 3, maxlength: 10000 });

  const rebaseButton = () => button("Rebase", rebase, { "data-testid": "cr-rebase" });

  function failed(error, fallback) {
    fillErrorBanner(banner, error, refusalTitle(error, fallback));
    if (error instanceof ApiError && error.code === "rebase_required" && isAuthor && open) replace(rebaseHolder, rebaseButton());
  }

  async function act(label, method, suffix, body) {
    banner.hidden = true;
    try {
      await request(method, `${path}${suffix}`, body === undefined ? {} : { body });
      toast(label);
      ctx.reload();
    } catch (error) {
      failed(error, `Could not ${label.toLowerCase()}`);
    }
  }

  function rebase() {
    return act("Rebased", "POST", "/rebase");
  }

  async function reject() {
    const ok = await confirmDialog({
      title: `Reject change request #${cr.id}?`,
      message: "A rejection is final: the author would open a new request.",
      confirmLabel: "Reject",
      danger: true,
    });
    if (ok) await act("Rejected", "POST", "/reject", { revision: cr.revision, comment: comment.value });
  }

  async function withdraw() {
    const ok = await confirmDialog({ title: `Withdraw change request #${cr.id}?`, message: "It will not be applied.", confirmLabel: "Withdraw", danger: true });
    if (ok) await act("Withdrawn", "POST", "/withdraw");
  }

  async function applyLater() {
    const fields = { apply_at: whenField("Apply at", null) };
    const done = await formDialog({
      title: `Apply change request #${cr.id} at a time`,
      fields,
      submitLabel: "Schedule",
      submit: async () => (await request("POST", `${path}/apply`, { body: { apply_at: localInputToRfc3339(fields.apply_at.input.value) } })).body,
    });
    if (done) {
      toast("Scheduled");
      ctx.reload();
    }
  }

  const actions = [];
  if (canWrite && cr.status === "open") {
    actions.push(
      button(`Approve revision ${cr.revision}`, () => act("Approved", "POST", "/approve", { revision: cr.revision, comment: comment.value }), { class: "primary", "data-testid": "cr-approve" }),
      button("Reject", reject, { class: "danger", "data-testid": "cr-reject" }),
    );
  }
  if (canWrite && cr.status === "approved") {
    actions.push(
      button("Apply now", () => act("Applied", "POST", "/apply", {}), { class: "primary", "data-testid": "cr-apply" }),
      button("Apply at a time…", applyLater, { "data-testid": "cr-apply-later" }),
    );
  }
  const moved = cr.current_version !== null && cr.current_version !== cr.base_version;
  if (canWrite && isAuthor && open) {
    if (moved) replace(rebaseHolder, rebaseButton());
    actions.push(rebaseHolder, button("Withdraw", withdraw, { class: "danger ghost", "data-testid": "cr-withdraw" }));
  }

  const commentForm = canWrite
    ? h(
        "div",
        { class: "form cr-comment" },
        h("label", { for: "cr-comment" }, "Comment"),
        comment,
        h(
          "p",
          { class: "row-actions" },
          button(
            "Comment",
            () => {
              if (!comment.value.trim()) {
                fillErrorBanner(banner, new Error("Write a comment first."), "Nothing to send");
                return null;
              }
              return act("Commented", "POST", "/comments", { body: comment.value });
            },
            { "data-testid": "cr-send-comment" },
          ),
          ...actions,
        ),
        h("p", { class: "hint" }, "Approve and Reject send the comment with the review."),
      )
    : h("p", { class: "muted", "data-testid": "cr-read-only" }, "Read-only: your role (", ctx.session.role, ") cannot review or apply.");

  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Status"),
    h("dd", {}, statusBadge(cr)),
    h("dt", {}, "Changes"),
    h("dd", {}, h("code", {}, cr.kind), " ", targetLink(ctx, cr), " — ", describeChange(cr)),
    h("dt", {}, "Approvals"),
    h("dd", { "data-testid": "cr-approvals" }, `${cr.approvals} of ${cr.approvals_required} (revision ${cr.revision})`),
    h("dt", {}, "Author"),
    h("dd", { "data-testid": "cr-author" }, h("code", {}, `${cr.author_key_prefix}…`), isAuthor ? " (you)" : null, " · opened ", timeAgo(cr.created_at)),
    h("dt", {}, "Based on"),
    h("dd", {}, `v${cr.base_version}`, cr.current_version === null ? " (the target no longer exists)" : moved ? ` (now v${cr.current_version}: rebase before applying)` : " (current)"),
    cr.applied_at ? [h("dt", {}, "Applied"), h("dd", {}, `${formatTime(cr.applied_at)}`, cr.applied_version !== null ? ` as v${cr.applied_version}` : null)] : null,
    cr.scheduled_change_id !== null ? [h("dt", {}, "Scheduled"), h("dd", {}, h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "scheduled") }, `scheduled change ${cr.scheduled_change_id}`))] : null,
  );

  return h(
    "section",
    { class: "page" },
    pageHeader(cr.title, `Change request #${cr.id} · project ${ctx.project} · environment ${ctx.env}`, h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "requests") }, "All requests")),
    banner,
    cr.description ? h("p", { class: "prewrap", "data-testid": "cr-description" }, cr.description) : null,
    facts,
    h("h2", {}, "What applying it now would change"),
    h("div", { "data-testid": "cr-diff" }, diffView(cr.diff)),
    h("h2", {}, "Activity"),
    cr.events.length ? h("ol", { class: "cr-events", "data-testid": "cr-events" }, cr.events.map(eventItem)) : h("p", { class: "muted" }, "No comments or reviews yet."),
    commentForm,
  );
}
