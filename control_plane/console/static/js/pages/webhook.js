// One webhook and its delivery log (newest first): event, outcome, attempts, the receiver's HTTP status,
// latency, the start of its answer and the error. The answer and error come from whoever runs the URL, so
// they are shown as text only. While a delivery is pending the log is read again every few seconds.

import { ApiError, get } from "../api.js";
import { h, replace } from "../dom.js";
import {
  badge,
  button,
  emptyState,
  errorBanner,
  formatTime,
  pageHeader,
  showMore,
  table,
  timeAgo,
} from "../ui.js";

const POLL_MS = 2000;
const STATUS_KIND = { pending: "warn", delivered: "on", failed: "error" };

export async function render(ctx) {
  const id = ctx.params.webhook;
  ctx.title(`Webhook ${id} · ${ctx.project}`);
  const back = h("p", { class: "breadcrumb" }, h("a", { href: ctx.href("p", ctx.project, "webhooks") }, "Webhooks"), " / ", id);
  if (!ctx.can("writer")) {
    return h("section", { class: "page" }, back, pageHeader("Webhook deliveries"), h("p", { "data-testid": "needs-writer" }, "Webhooks need a writer or admin key; you are signed in as ", ctx.session.role, "."));
  }
  if (!/^[1-9][0-9]{0,18}$/.test(id)) {
    return h("section", { class: "page" }, back, pageHeader("Webhook not found"), h("p", {}, "There is no webhook ", h("code", {}, id), "."));
  }
  const base = `/projects/${encodeURIComponent(ctx.project)}/webhooks/${id}`;
  let hook;
  try {
    hook = (await get(base)).body;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      return h("section", { class: "page" }, back, pageHeader("Webhook not found"), h("p", {}, "There is no webhook ", h("code", {}, id), " in this project."));
    }
    throw error;
  }
  const banner = errorBanner(null);
  const holder = h("div", {});
  let items = [];
  let nextCursor = null;
  let shownJson = null;

  const load = async (cursor) => (await get(`${base}/deliveries`, { cursor, limit: 50 })).body;

  const columns = [
    { label: "Event", cell: (d) => h("code", {}, d.event) },
    { label: "Status", cell: (d) => badge(d.status, STATUS_KIND[d.status] || "", { "data-testid": `delivery-status-${d.id}` }) },
    { label: "Attempts", class: "num", cell: (d) => String(d.attempts) },
    { label: "HTTP", class: "num", cell: (d) => h("span", { "data-testid": `delivery-http-${d.id}` }, d.http_status === null ? "—" : String(d.http_status)) },
    { label: "Latency", class: "num", cell: (d) => (d.latency_ms === null ? "—" : `${d.latency_ms} ms`) },
    {
      label: "Answer (start)",
      cell: (d) => (d.response_excerpt ? h("pre", { class: "excerpt prewrap small", "data-testid": `delivery-excerpt-${d.id}` }, d.response_excerpt) : h("span", { class: "muted" }, "—")),
    },
    { label: "Error", cell: (d) => (d.error ? h("span", { class: "prewrap small", "data-testid": `delivery-error-${d.id}` }, d.error) : h("span", { class: "muted" }, "—")) },
    {
      label: "Times",
      cell: (d) =>
        h(
          "span",
          { class: "small" },
          "raised ",
          timeAgo(d.created_at),
          d.last_attempt_at ? [h("br", {}), "last try ", timeAgo(d.last_attempt_at)] : null,
          d.completed_at ? [h("br", {}), "done ", timeAgo(d.completed_at)] : null,
          d.status === "pending" && d.next_attempt_at ? [h("br", {}), "next ", h("span", { title: formatTime(d.next_attempt_at) }, timeAgo(d.next_attempt_at))] : null,
        ),
    },
  ];

  function show() {
    const json = JSON.stringify([items, nextCursor]);
    if (json === shownJson) return;
    shownJson = json;
    replace(
      holder,
      items.length
        ? table(columns, items, { rowAttrs: (d) => ({ "data-testid": `delivery-row-${d.id}` }), caption: "Deliveries" })
        : emptyState("No deliveries yet", "they appear when a subscribed event happens, or with Send test on the Webhooks page"),
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
  const timer = setInterval(async () => {
    if (!holder.isConnected) {
      clearInterval(timer);
      return;
    }
    if (document.hidden || nextCursor || !items.some((d) => d.status === "pending")) return;
    try {
      const page = await load(null);
      if (!holder.isConnected) return;
      items = page.items;
      nextCursor = page.next_cursor;
      show();
    } catch {
      // keep the last answer; Refresh shows the error
    }
  }, POLL_MS);

  return h(
    "section",
    { class: "page" },
    back,
    pageHeader("Webhook deliveries", null, button("Refresh", () => ctx.reload())),
    h(
      "dl",
      { class: "facts card" },
      h("dt", {}, "URL"),
      h("dd", { class: "prewrap", "data-testid": "webhook-url" }, hook.url),
      h("dt", {}, "Description"),
      h("dd", { class: "prewrap", "data-testid": "webhook-description" }, hook.description || h("span", { class: "muted" }, "—")),
      h("dt", {}, "Events"),
      h("dd", {}, hook.events.join(", ")),
      h("dt", {}, "State"),
      h("dd", {}, hook.enabled ? badge("enabled", "on") : [badge("disabled", "off"), hook.disabled_reason ? [" ", hook.disabled_reason] : null], ` · ${hook.consecutive_failures} failure(s) in a row`),
    ),
    banner,
    h("section", { class: "card", "aria-labelledby": "deliveries-h" }, h("h2", { id: "deliveries-h" }, "Deliveries"), holder),
  );
}
