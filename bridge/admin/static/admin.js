/* crm-bridge console: copy buttons, field-map rows, confirmations. No framework, no inline
   handlers (CSP-friendly); everything works without it except copying and adding rows. */
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    document.body.removeChild(area);
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) return;
      copyText(field.value || field.textContent).then(function () {
        button.textContent = "Copied";
        button.classList.add("copied");
        window.setTimeout(function () { button.textContent = "Copy"; button.classList.remove("copied"); }, 2000);
      }, function () {
        field.select();
        button.textContent = "Press Ctrl+C";
      });
      return;
    }
    var add = event.target.closest("[data-add-row]");
    if (add) {
      var rows = document.querySelector("[data-map-rows]");
      var template = document.getElementById("map-row-template");
      if (rows && template) {
        rows.appendChild(template.content.cloneNode(true));
        var inputs = rows.querySelectorAll("input[name=field_map_local]");
        inputs[inputs.length - 1].focus();
      }
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) {
      var row = remove.closest(".map-row");
      if (row) {
        row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
        if (row.parentElement.querySelectorAll(".map-row").length > 1) row.remove();
      }
    }
  });

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();

/* Batches: while one runs, poll the batches' JSON (the table's data-poll URL) and move the
   progress bars; reload the page when none runs any more. */
(function () {
  var table = document.querySelector("table[data-poll]");
  if (!table) return;
  var url = table.getAttribute("data-poll");
  function tick() {
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (data) {
      var running = false;
      data.items.forEach(function (b) {
        var row = table.querySelector('tr[data-batch="' + b.id + '"]');
        if (!row) return;
        if (b.status === "queued" || b.status === "running") running = true;
        var pct = b.total ? Math.round(100 * b.done / b.total) : 0;
        row.querySelector('[data-field="bar"]').style.width = pct + "%";
        row.querySelector('[role="progressbar"]').setAttribute("aria-valuenow", pct);
        row.querySelector('[data-field="count"]').textContent = b.done + " / " + (b.total === null ? "?" : b.total);
        ["created", "updated", "failed"].forEach(function (k) { row.querySelector('[data-field="' + k + '"]').textContent = b[k]; });
        row.querySelector('[data-field="status"] .badge').textContent = b.status;
      });
      if (running) setTimeout(tick, 1000); else window.location.reload();
    }).catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 1000);
})();
