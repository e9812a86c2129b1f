// carteiro console: runs Test connection without leaving the form. Without
// JavaScript the same button submits the form and the page comes back with
// the result.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("#test-connection");
  if (!button) return;
  event.preventDefault();
  const form = button.form;
  const body = new URLSearchParams(new FormData(form));
  body.set("action", "test");
  body.set("fragment", "1");
  const label = button.textContent;
  button.disabled = true;
  button.textContent = button.dataset.testing || label;
  try {
    // Not form.action: the buttons are named "action" and would shadow it.
    const response = await fetch(form.getAttribute("action"), {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    const html = await response.text();
    const old = document.getElementById("test-result");
    // A session that ended comes back as the login page, after a redirect.
    if (response.ok && !response.redirected && old) {
      old.outerHTML = html;
    } else {
      // The login page or an error page: show it as the server wrote it.
      document.open();
      document.write(html);
      document.close();
    }
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
});
