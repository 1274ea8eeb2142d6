// Webhooks of a project (writers and admins; the API refuses readers): each subscription's URL, events,
// state (disabled, and why) and failures in a row. Create and rotate show the signing secret once (Copy);
// edit changes URL, events, description or enabled (which also re-enables one disabled after failures);
// Send test queues a webhook.test delivery; delete asks first. The URL and description are the writer's
// text and are shown as text.

import { request } from "../api.js";
import { h, uid } from "../dom.js";
import {
  badge,
  button,
  confirmDialog,
  emptyState,
  errorBanner,
  field,
  fillErrorBanner,
  formDialog,
  pageHeader,
  showSecretOnce,
  table,
  textInput,
  timeAgo,
  toast,
} from "../ui.js";
import { WEBHOOK_EVENTS } from "../webhook-events.js";

const MAX_URL = 2048;
const MAX_DESCRIPTION = 1000;

/** The events as a group of checkboxes, with the field() interface formDialog's placeErrors uses. */
export function eventsField(selected = []) {
  const errorId = uid("err");
  const errorEl = h("p", { class: "field-error", id: errorId, hidden: true, role: "alert" });
  const boxes = WEBHOOK_EVENTS.map(([name, description]) => {
    const box = h("input", { type: "checkbox", value: name, checked: selected.includes(name), "data-event": name });
    return { name, box, label: h("label", {}, box, h("span", {}, h("code", {}, name), h("br", {}), h("span", { class: "muted" }, description))) };
  });
  const element = h(
    "fieldset",
    { class: "event-choices field wide", "aria-describedby": errorId },
    h("legend", {}, "Events"),
    boxes.map((b) => b.label),
    errorEl,
  );
  return {
    element,
    input: boxes[0].box,
    value: () => boxes.filter((b) => b.box.checked).map((b) => b.name),
    error(message) {
      errorEl.textContent = errorEl.hidden ? message : `${errorEl.textContent}\n${message}`;
      errorEl.hidden = false;
      element.setAttribute("aria-invalid", "true");
    },
    clear() {
      errorEl.textContent = "";
      errorEl.hidden = true;
      element.removeAttribute("aria-invalid");
    },
  };
}

const SECRET_NOTE =
  "Copy this signing secret now. It is shown only once; receivers use it to check each delivery's webhook-signature (Standard Webhooks).";

export function showWebhookSecret(title, created) {
  return showSecretOnce(title, created, {
    secret: created.secret,
    note: SECRET_NOTE,
    facts: [
      ["URL", h("span", { class: "prewrap" }, created.url)],
      ["Events", created.events.join(", ")],
      ["Secret prefix", h("code", {}, created.secret_prefix)],
    ],
  });
}

/** The create/edit form's fields, prefilled from `hook` when editing. */
function webhookFields(hook) {
  const fields = {
    url: field("URL", textInput({ value: hook ? hook.url : "", maxlength: MAX_URL, autofocus: true, inputmode: "url" }), {
      hint: "An http or https address that accepts POST; deliveries are signed with the subscription's secret.",
      wide: true,
    }),
    events: eventsField(hook ? hook.events : []),
    description: field("Description (optional)", h("textarea", { rows: 2, maxlength: MAX_DESCRIPTION, value: hook ? hook.description : "" }), { wide: true }),
  };
  if (hook) {
    fields.enabled = field("Enabled", h("input", { type: "checkbox", checked: hook.enabled }), {
      hint: hook.enabled ? "Unticked: no deliveries are made." : "Ticking it re-enables deliveries (also after automatic disabling).",
    });
  }
  return fields;
}

export async function render(ctx) {
  ctx.title(`Webhooks · ${ctx.project}`);
  if (!ctx.can("writer")) {
    return h(
      "section",
      { class: "page" },
      pageHeader("Webhooks"),
      h("p", { "data-testid": "needs-writer" }, "Managing webhooks needs a writer or admin key; you are signed in as ", ctx.session.role, "."),
    );
  }
  const base = `/projects/${encodeURIComponent(ctx.project)}/webhooks`;
  const { body } = await request("GET", base);
  const hooks = body.items;
  const banner = errorBanner(null);

  async function create() {
    const fields = webhookFields(null);
    const created = await formDialog({
      title: `New webhook for ${ctx.project}`,
      fields,
      wide: true,
      submitLabel: "Create webhook",
      submit: async () =>
        (
          await request("POST", base, {
            body: { url: fields.url.input.value.trim(), events: fields.events.value(), description: fields.description.input.value },
          })
        ).body,
    });
    if (created) {
      await showWebhookSecret("Your webhook's signing secret", created);
      ctx.reload();
    }
  }

  async function edit(hook) {
    const fields = webhookFields(hook);
    const updated = await formDialog({
      title: `Edit webhook ${hook.id}`,
      fields,
      wide: true,
      submitLabel: "Save webhook",
      submit: async () =>
        (
          await request("PATCH", `${base}/${hook.id}`, {
            body: {
              url: fields.url.input.value.trim(),
              events: fields.events.value(),
              description: fields.description.input.value,
              enabled: fields.enabled.input.checked,
            },
          })
        ).body,
    });
    if (updated) {
      toast(`Saved webhook ${updated.id}`);
      ctx.reload();
    }
  }

  async function rotate(hook) {
    const ok = await confirmDialog({
      title: `Rotate the secret of webhook ${hook.id}?`,
      message: h("p", {}, "A new signing secret is issued and shown once. The old one (", h("code", {}, `${hook.secret_prefix}…`), ") stops at once: deliveries from now on are signed with the new one, so update the receiver."),
      confirmLabel: "Rotate secret",
    });
    if (!ok) return;
    try {
      const { body: rotated } = await request("POST", `${base}/${hook.id}/rotate-secret`);
      await showWebhookSecret(`New signing secret of webhook ${hook.id}`, rotated);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not rotate the secret of webhook ${hook.id}`);
    }
  }

  async function sendTest(hook) {
    try {
      const { body: queued } = await request("POST", `${base}/${hook.id}/test`);
      toast(`Test event queued (delivery ${queued.delivery_id}); see Deliveries`);
    } catch (error) {
      fillErrorBanner(banner, error, `Could not send a test event to webhook ${hook.id}`);
    }
  }

  async function remove(hook) {
    const ok = await confirmDialog({
      title: `Delete webhook ${hook.id}?`,
      message: h("p", {}, "Deliveries to ", h("code", { class: "prewrap" }, hook.url), " stop, and its delivery log is deleted. This cannot be undone."),
      confirmLabel: "Delete webhook",
      danger: true,
    });
    if (!ok) return;
    try {
      await request("DELETE", `${base}/${hook.id}`);
      toast(`Webhook ${hook.id} deleted`);
      ctx.reload();
    } catch (error) {
      fillErrorBanner(banner, error, `Could not delete webhook ${hook.id}`);
    }
  }

  const state = (w) =>
    w.enabled
      ? badge("enabled", "on", { "data-testid": `webhook-state-${w.id}` })
      : h("span", {}, badge("disabled", "off", { "data-testid": `webhook-state-${w.id}` }), w.disabled_reason ? h("div", { class: "muted small prewrap" }, w.disabled_reason) : null);

  const columns = [
    {
      label: "URL",
      class: "url-cell",
      cell: (w) =>
        h(
          "div",
          {},
          h("a", { href: ctx.href("p", ctx.project, "webhooks", w.id), "data-testid": `webhook-url-${w.id}`, class: "prewrap" }, w.url),
          w.description ? h("div", { class: "muted small prewrap", "data-testid": `webhook-description-${w.id}` }, w.description) : null,
        ),
    },
    { label: "Events", cell: (w) => h("span", { class: "tags" }, w.events.map((e) => badge(e, "tag"))) },
    { label: "State", cell: state },
    { label: "Failures in a row", class: "num", cell: (w) => String(w.consecutive_failures) },
    { label: "Secret", cell: (w) => h("code", {}, `${w.secret_prefix}…`) },
    { label: "Changed", cell: (w) => timeAgo(w.updated_at) },
    {
      label: h("span", { class: "visually-hidden" }, "Actions"),
      class: "actions-cell wrap",
      cell: (w) =>
        h(
          "span",
          { class: "row-actions" },
          h("a", { class: "button", href: ctx.href("p", ctx.project, "webhooks", w.id), "aria-label": `Deliveries of webhook ${w.id}` }, "Deliveries"),
          button("Send test", () => sendTest(w), { "aria-label": `Send a test event to webhook ${w.id}`, "data-testid": `test-${w.id}` }),
          button("Edit", () => edit(w), { "aria-label": `Edit webhook ${w.id}`, "data-testid": `edit-${w.id}` }),
          button("Rotate secret", () => rotate(w), { "aria-label": `Rotate the secret of webhook ${w.id}`, "data-testid": `rotate-${w.id}` }),
          button("Delete", () => remove(w), { class: "danger ghost", "aria-label": `Delete webhook ${w.id}`, "data-testid": `delete-${w.id}` }),
        ),
    },
  ];

  return h(
    "section",
    { class: "page" },
    pageHeader(
      "Webhooks",
      `Project ${ctx.project}: changes are POSTed, signed, to these URLs. Secrets are shown once, when a webhook is created or its secret rotated.`,
      button("New webhook", create, { class: "primary" }),
    ),
    banner,
    hooks.length
      ? table(columns, hooks, { rowAttrs: (w) => ({ "data-testid": `webhook-row-${w.id}` }), caption: "Webhooks" })
      : emptyState(`No webhooks in ${ctx.project} yet`, button("Create a webhook", create)),
  );
}
