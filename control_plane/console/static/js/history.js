// Version history of a flag or a segment: the versions, pick two → Compare (a readable diff), Rollback
// (with confirmation) restores an earlier version as a new one.

import { get, request } from "./api.js";
import { h, replace } from "./dom.js";
import { loadDiffView } from "./fallbacks.js";
import { button, confirmDialog, errorBanner, fillErrorBanner, timeAgo, toast } from "./ui.js";

/** base: "/projects/p/flags/f" or "/projects/p/segments/s"; label: "flag checkout". */
export async function historyView({ base, label, canWrite, currentVersion, onRolledBack }) {
  const diffView = await loadDiffView();
  const versions = [];
  let cursor = null;
  const first = await get(`${base}/versions`, { limit: 50 });
  versions.push(...first.body.items);
  cursor = first.body.next_cursor;
  let latest = currentVersion ?? (versions.length ? Math.max(...versions.map((v) => v.version)) : null);

  const selected = new Set();
  const banner = errorBanner(null);
  const diffHolder = h("div", { class: "diff-holder", "aria-live": "polite" });
  const tableHolder = h("div", {});
  const compare = button("Compare", onCompare, { class: "primary", disabled: true });
  const hint = h("span", { class: "muted small" }, "Select two versions to compare.");
  const more = button("Load older versions", loadMore, { hidden: !cursor });

  function onSelect(version, checked) {
    if (checked) selected.add(version);
    else selected.delete(version);
    while (selected.size > 2) selected.delete(selected.values().next().value);
    compare.disabled = selected.size !== 2;
    hint.textContent = selected.size === 2 ? `Compare v${[...selected].sort((a, b) => a - b).join(" → v")}` : "Select two versions to compare.";
    for (const box of tableHolder.querySelectorAll("input[type=checkbox]")) box.checked = selected.has(Number(box.value));
  }

  async function onCompare() {
    const [from, to] = [...selected].sort((a, b) => a - b);
    replace(diffHolder, h("p", { class: "muted" }, "Loading the difference…"));
    try {
      const { body } = await get(`${base}/diff`, { from, to });
      replace(
        diffHolder,
        h(
          "section",
          { class: "card", "aria-labelledby": "diff-h", "data-testid": "diff" },
          h("h2", { id: "diff-h" }, `Changes from v${body.from_version} to v${body.to_version}`),
          diffView(body.changes),
        ),
      );
      diffHolder.querySelector("h2").setAttribute("tabindex", "-1");
      diffHolder.querySelector("h2").focus();
    } catch (error) {
      replace(diffHolder, errorBanner(error, { title: "Could not load the difference" }));
    }
  }

  async function rollback(version) {
    const answer = await confirmDialog({
      title: `Roll back ${label} to version ${version.version}?`,
      message: h(
        "p",
        {},
        `This restores version ${version.version} (${version.action}, ${new Date(version.created_at).toLocaleString()}) as a new version. `,
        "Every environment's configuration in that version comes back; SDKs see it within seconds.",
      ),
      comment: true,
      danger: true,
    });
    if (!answer) return;
    try {
      const { body } = await request("POST", `${base}/rollback`, {
        body: { version: version.version, comment: answer.comment || `rollback to v${version.version}` },
        ifMatch: latest ? `"${latest}"` : undefined,
      });
      toast(`Rolled back: ${label} is now v${body.version}`);
      if (onRolledBack) onRolledBack(body);
    } catch (error) {
      fillErrorBanner(banner, error, "The rollback did not happen");
    }
  }

  async function loadMore() {
    more.disabled = true;
    try {
      const { body } = await get(`${base}/versions`, { limit: 50, cursor });
      versions.push(...body.items);
      cursor = body.next_cursor;
      more.hidden = !cursor;
      renderTable();
    } catch (error) {
      fillErrorBanner(banner, error, "Could not load older versions");
    } finally {
      more.disabled = false;
    }
  }

  function renderTable() {
    latest = currentVersion ?? (versions.length ? Math.max(...versions.map((v) => v.version)) : null);
    replace(
      tableHolder,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("caption", { class: "visually-hidden" }, "Versions"),
          h("thead", {}, h("tr", {}, ["", "Version", "Change", "Comment", "By key", "When", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            versions.map((v) =>
              h(
                "tr",
                { "data-testid": `version-row-${v.version}` },
                h(
                  "td",
                  {},
                  h("input", {
                    type: "checkbox",
                    value: String(v.version),
                    checked: selected.has(v.version),
                    "aria-label": `Select version ${v.version}`,
                    on: { change: (e) => onSelect(v.version, e.target.checked) },
                  }),
                ),
                h("td", { class: "num" }, `v${v.version}`, v.version === latest ? h("span", { class: "badge on small-badge" }, "current") : null),
                h("td", {}, v.action),
                h("td", { class: "prewrap" }, v.comment || h("span", { class: "muted" }, "—")),
                h("td", {}, v.author_key_id === null ? "—" : `#${v.author_key_id}`),
                h("td", {}, timeAgo(v.created_at)),
                h(
                  "td",
                  { class: "actions-cell" },
                  canWrite && v.version !== latest ? button("Rollback", () => rollback(v), { "aria-label": `Rollback to version ${v.version}` }) : null,
                ),
              ),
            ),
          ),
        ),
      ),
    );
  }

  renderTable();
  return h(
    "div",
    { class: "history" },
    banner,
    h("div", { class: "toolbar" }, compare, hint),
    tableHolder,
    more,
    diffHolder,
  );
}
