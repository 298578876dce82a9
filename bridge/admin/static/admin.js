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
