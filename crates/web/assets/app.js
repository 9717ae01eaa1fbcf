// spanblame's only script: copy buttons, status buttons (findings, incidents), proposing a
// revert, sign-out. Pages work without it.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : null;
}

async function post(path, body) {
  const headers = { "content-type": "application/json" };
  const token = csrfToken();
  if (token) headers["x-csrf-token"] = token;
  const response = await fetch(path, { method: "POST", headers, body: body ? JSON.stringify(body) : "", credentials: "same-origin", redirect: "manual" });
  if (!response.ok && response.type !== "opaqueredirect") {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button");
  if (!button) return;
  if (button.dataset.copy) {
    const source = document.getElementById(button.dataset.copy);
    const status = document.getElementById(button.dataset.copy + "-copied");
    try {
      await navigator.clipboard.writeText(source.textContent);
      if (status) status.textContent = "Copied.";
    } catch (_) {
      // No clipboard (an insecure origin): select the text so Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (status) status.textContent = "Selected: press Ctrl+C to copy.";
    }
  } else if (button.dataset.status && button.dataset.action) {
    // A finding's or an incident's status, with the note typed beside the buttons.
    const note = document.getElementById("status-note");
    const text = note ? note.value.trim() : "";
    try {
      await post(button.dataset.status + "/" + button.dataset.action, text ? { note: text } : null);
      window.location.reload();
    } catch (error) {
      const status = document.getElementById("status");
      if (status) status.textContent = status.textContent + " (not changed: " + error.message + ")";
    }
  } else if (button.dataset.revert) {
    // Propose the top suspect's revert on the forge; the notifications list then shows it.
    const status = document.getElementById("revert-status");
    button.disabled = true;
    try {
      await post(button.dataset.revert, null);
      window.location.reload();
    } catch (error) {
      if (status) status.textContent = "Not proposed: " + error.message;
      button.disabled = false;
    }
  } else if (button.dataset.signOut) {
    // The server answers with a redirect to the provider's sign-out; the session is gone
    // either way, so go home.
    await post("/auth/logout").catch(() => {});
    window.location.href = "/";
  }
});
