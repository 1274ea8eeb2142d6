// The header's live indicator: has the last change of the current environment reached the data planes?
// Polls GET /projects/{p}/environments/{e}/propagation every few seconds while the page is visible.

import { ApiError, get } from "./api.js";
import { h, replace } from "./dom.js";

const INTERVAL_MS = 3000;
const FAST_INTERVAL_MS = 700; // for a while after a change made here, to show it propagating
const FAST_FOR_MS = 10000;
const MISSING_INTERVAL_MS = 30000; // the route is absent on servers older than the console

/** Words for one propagation body: "Live: rev 12 on 2 data planes" or "Propagating… 11/12". */
export function describePropagation(body) {
  const planes = body.data_planes || [];
  const revision = body.revision;
  if (body.in_sync) {
    if (!planes.length) return { kind: "live", text: `Synced: rev ${revision} (no data plane reporting)` };
    return { kind: "live", text: `Live: rev ${revision} on ${planes.length} data plane${planes.length === 1 ? "" : "s"}` };
  }
  const served = planes.length ? Math.min(...planes.map((p) => p.revision)) : body.stored_revision;
  if (served === null || served === undefined) return { kind: "pending", text: `Propagating… waiting for the syncer (rev ${revision})` };
  return { kind: "pending", text: `Propagating… ${served}/${revision}` };
}

export function propagationIndicator() {
  const dot = h("span", { class: "dot", "aria-hidden": "true" });
  const text = h("span", {}, "…");
  const element = h("a", { class: "propagation unknown", "data-testid": "propagation", title: "Whether the last change reached the data planes" }, dot, text);
  let timer = null;
  let target = null;
  let generation = 0;
  let fastUntil = 0;

  async function poll(gen) {
    if (gen !== generation) return;
    let delay = Date.now() < fastUntil ? FAST_INTERVAL_MS : INTERVAL_MS;
    if (!document.hidden) {
      try {
        const { body } = await get(`/projects/${encodeURIComponent(target.project)}/environments/${encodeURIComponent(target.env)}/propagation`);
        if (gen !== generation) return;
        const { kind, text: words } = describePropagation(body);
        element.className = `propagation ${kind}`;
        element.hidden = false;
        replace(text, words);
        element.title = (body.data_planes || []).map((p) => `${p.id}: rev ${p.revision}, reported ${new Date(p.reported_at).toLocaleTimeString()}`).join("\n") || `Last write rev ${body.revision}; Redis holds rev ${body.stored_revision ?? "none"}`;
      } catch (error) {
        if (gen !== generation) return;
        if (error instanceof ApiError && error.status === 404) {
          element.hidden = true;
          delay = MISSING_INTERVAL_MS;
        } else if (error instanceof ApiError && error.status === 401) {
          return;
        } else {
          element.className = "propagation unknown";
          replace(text, "Propagation unknown");
          element.title = error.message;
        }
      }
    }
    if (gen === generation) timer = setTimeout(() => poll(gen), delay);
  }

  return {
    element,
    start(project, env) {
      element.setAttribute("href", `#/p/${encodeURIComponent(project)}/e/${encodeURIComponent(env)}/operations`);
      if (target && target.project === project && target.env === env && timer) return;
      this.stop();
      target = { project, env };
      element.hidden = false;
      element.className = "propagation unknown";
      replace(text, "Checking propagation…");
      poll(generation);
    },
    /** A change was just made: look now, and often for a few seconds. */
    nudge() {
      if (!target) return;
      fastUntil = Date.now() + FAST_FOR_MS;
      clearTimeout(timer);
      generation += 1;
      poll(generation);
    },
    stop() {
      generation += 1;
      clearTimeout(timer);
      timer = null;
      target = null;
    },
  };
}
