// Sign in: exchange an API key for a session (an HttpOnly cookie). The key goes to the server once, in the
// POST body, and is never kept: not in storage, not in the URL, not in a variable after the request.

import { ApiError, request } from "../api.js";
import { h } from "../dom.js";
import { errorBanner, field, fillErrorBanner } from "../ui.js";

export function render({ signedIn, message }) {
  const keyInput = h("input", {
    type: "password",
    name: "api_key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    autofocus: true,
    placeholder: "fy_admin_…",
  });
  const keyField = field("API key", keyInput, {
    hint: "An admin, writer or reader key. It is exchanged for a session and not stored in this browser.",
  });
  const banner = errorBanner(null);
  const submit = h("button", { type: "submit", class: "primary wide" }, "Sign in");
  const form = h(
    "form",
    { class: "signin-card", method: "post", novalidate: true },
    h("div", { class: "signin-brand" }, h("span", { class: "logo", "aria-hidden": "true" }, "⚑"), " Flagyard"),
    h("h1", { tabindex: "-1" }, "Sign in to the console"),
    message ? h("p", { class: "banner info", role: "status" }, message) : null,
    banner,
    keyField.element,
    submit,
    h("p", { class: "hint" }, "No key? ", h("code", {}, "flagyard up"), " prints an admin key on its first run; an admin can create more on the Keys page."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    keyField.clear();
    banner.hidden = true;
    const value = keyInput.value.trim();
    if (!value) {
      keyField.error("Enter an API key.");
      keyInput.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const { body } = await request("POST", "/sessions", { body: { api_key: value } });
      keyInput.value = "";
      signedIn(body);
    } catch (error) {
      keyInput.value = "";
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        keyField.error(error.status === 401 ? "That key is not valid (unknown, revoked or expired)." : error.message);
      } else {
        fillErrorBanner(banner, error, "Could not sign in");
      }
      keyInput.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  });
  return form;
}
