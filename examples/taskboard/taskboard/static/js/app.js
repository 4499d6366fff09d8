// Progressive enhancement: toggling a task updates the row in place instead of reloading
// the page. Without JavaScript the same forms post and redirect as usual.
(function () {
  "use strict";

  function render(row, task) {
    var button = row.querySelector(".toggle button");
    row.classList.toggle("is-done", task.done);
    button.textContent = task.done ? "\u2713" : "\u25CB";
    button.setAttribute("aria-pressed", task.done ? "true" : "false");
    button.title = task.done ? "Mark as not done" : "Mark as done";
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || form.dataset.enhance !== "toggle" || !window.fetch) {
      return;
    }
    event.preventDefault();
    var row = form.closest(".task");
    row.classList.add("is-busy");
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (task) {
        render(row, task);
      })
      .catch(function () {
        // Fall back to the plain form post, which shows the server's answer.
        form.submit();
      })
      .finally(function () {
        row.classList.remove("is-busy");
      });
  });
})();
