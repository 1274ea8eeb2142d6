// Operations: has the last change reached the data planes (propagation), which flags SDKs evaluate
// (usage per flag, variant and reason), and the sync jobs whose retries are exhausted (requeue).

import { ApiError, get, getAll, request } from "../api.js";
import { h, replace } from "../dom.js";
import { describePropagation } from "../propagation.js";
import { badge, button, emptyState, errorBanner, fillErrorBanner, formatTime, pageHeader, table, timeAgo, toast } from "../ui.js";

const counts = (map) =>
  Object.keys(map).length
    ? h("ul", { class: "counts" }, Object.entries(map).sort((a, b) => b[1] - a[1]).map(([k, n]) => h("li", {}, h("code", {}, k), ` ${n.toLocaleString()}`)))
    : h("span", { class: "muted" }, "—");

export async function render(ctx) {
  ctx.title(`Operations · ${ctx.project}/${ctx.env}`);
  const envBase = `/projects/${encodeURIComponent(ctx.project)}/environments/${encodeURIComponent(ctx.env)}`;
  const tolerate404 = (promise) => promise.then((r) => r.body, (error) => (error instanceof ApiError && error.status === 404 ? null : Promise.reject(error)));
  const [propagation, usage, failed] = await Promise.all([
    tolerate404(get(`${envBase}/propagation`)),
    get(`${envBase}/evaluations`).then((r) => r.body, (error) => ({ error })),
    ctx.isGlobalAdmin ? getAll("/jobs/failed").catch((error) => ({ error })) : Promise.resolve(null),
  ]);
  const banner = errorBanner(null);

  // --- propagation (refreshed every few seconds while this page is shown) ---------------------------
  function propagationDetail(body) {
    if (!body) return h("p", { class: "muted" }, "This server does not report propagation yet.");
    const { kind, text } = describePropagation(body);
    return h(
      "div",
      { "data-testid": "propagation-detail", class: "stack" },
      h("p", {}, badge(kind === "live" ? "in sync" : "propagating", kind === "live" ? "on" : "warn"), " ", text),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Last write (database)"),
        h("dd", {}, `rev ${body.revision}`),
        h("dt", {}, "Stored for data planes (Redis)"),
        h("dd", {}, body.stored_revision === null ? "nothing yet" : `rev ${body.stored_revision}`),
      ),
      body.data_planes.length
        ? table(
            [
              { label: "Data plane", cell: (d) => h("code", {}, d.id) },
              { label: "Serves", cell: (d) => h("span", {}, `rev ${d.revision}`, d.revision >= body.revision ? null : [" ", badge("behind", "warn")]) },
              { label: "Reported", cell: (d) => timeAgo(d.reported_at) },
            ],
            body.data_planes,
            { caption: "Data planes" },
          )
        : h("p", { class: "muted" }, "No data plane has reported serving this environment."),
    );
  }
  const propagationCard = h("div", {}, propagationDetail(propagation));
  if (propagation) {
    const timer = setInterval(async () => {
      if (!propagationCard.isConnected) {
        clearInterval(timer); // the page was left
        return;
      }
      if (document.hidden) return;
      try {
        replace(propagationCard, propagationDetail(await tolerate404(get(`${envBase}/propagation`))));
      } catch {
        // keep the last answer; the header's indicator says when the server is unreachable
      }
    }, 3000);
  }

  // --- usage ------------------------------------------------------------------------------------
  let usageCard;
  if (usage.error) usageCard = errorBanner(usage.error, { title: "Evaluation counts are unavailable" });
  else if (!usage.flags.length) usageCard = emptyState("No flags in this project yet");
  else {
    usageCard = table(
      [
        { label: "Flag", cell: (f) => h("a", { href: ctx.href("p", ctx.project, "e", ctx.env, "flags", f.key) }, f.key) },
        { label: "Evaluations", class: "num", cell: (f) => f.evaluations.toLocaleString() },
        { label: "By variant", cell: (f) => counts(f.variants) },
        { label: "By reason", cell: (f) => counts(f.reasons) },
        { label: "Last evaluated", cell: (f) => (f.last_evaluated_at ? timeAgo(f.last_evaluated_at) : h("span", { class: "muted" }, "never")) },
        { label: "", cell: (f) => (f.stale ? badge("Stale", "stale", { title: `No evaluation for ${usage.stale_after_days} days` }) : null) },
      ],
      usage.flags,
      { rowAttrs: (f) => ({ "data-testid": `usage-row-${f.key}` }), caption: "Evaluation usage" },
    );
  }

  // --- failed sync jobs -----------------------------------------------------------------------------
  const jobsHolder = h("div", {});
  async function requeue(ids) {
    try {
      const { body } = await request("POST", "/jobs/failed/requeue", { body: ids ? { job_ids: ids } : {} });
      toast(`Requeued ${body.requeued.length} job${body.requeued.length === 1 ? "" : "s"}`);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, "Could not requeue");
    }
  }
  if (!ctx.isGlobalAdmin) {
    replace(jobsHolder, h("p", { class: "muted" }, "Failed sync jobs are visible to global admins only."));
  } else if (failed && failed.error) {
    replace(jobsHolder, errorBanner(failed.error, { title: "Could not list failed sync jobs" }));
  } else if (!failed.length) {
    replace(jobsHolder, emptyState("No failed sync jobs", "every change reached Redis"));
  } else {
    replace(
      jobsHolder,
      h("div", { class: "toolbar" }, button(`Requeue all ${failed.length}`, () => requeue(null), { class: "primary" })),
      table(
        [
          { label: "Job", cell: (j) => h("code", {}, j.id) },
          { label: "What", cell: (j) => j.description || "—" },
          { label: "Failed", cell: (j) => h("span", { title: formatTime(j.ended_at) }, timeAgo(j.ended_at)) },
          { label: "Error", cell: (j) => h("code", { class: "prewrap small" }, j.error) },
          { label: h("span", { class: "visually-hidden" }, "Actions"), class: "actions-cell", cell: (j) => button("Requeue", () => requeue([j.id]), { "aria-label": `Requeue ${j.id}` }) },
        ],
        failed,
        { rowAttrs: (j) => ({ "data-testid": `job-row-${j.id}` }), caption: "Failed sync jobs" },
      ),
    );
  }

  return h(
    "section",
    { class: "page" },
    pageHeader("Operations", `Project ${ctx.project} · environment ${ctx.env}`, button("Refresh", () => ctx.reload())),
    banner,
    h("section", { class: "card", "aria-labelledby": "prop-h" }, h("h2", { id: "prop-h" }, "Propagation"), propagationCard),
    h("section", { class: "card", "aria-labelledby": "usage-h" }, h("h2", { id: "usage-h" }, `Evaluation usage in ${ctx.env}`), usageCard),
    h("section", { class: "card", "aria-labelledby": "jobs-h" }, h("h2", { id: "jobs-h" }, "Failed sync jobs"), jobsHolder),
  );
}
