// ucmha support dashboard: progressive enhancements only; every page works without this file.
(function () {
  "use strict";
  // Filters apply as soon as a select changes.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) { select.form.requestSubmit ? select.form.requestSubmit() : select.form.submit(); }
    });
  });
  // Ask before a write that changes where a pair's traffic goes.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // No double submits.
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) { return; }
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    });
  });
  // Coming back through the history re-enables them.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[method=post] button[type=submit]").forEach(function (b) { b.disabled = false; });
  });
  // "/" focuses the search box.
  document.addEventListener("keydown", function (event) {
    var q = document.getElementById("q");
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (event.key === "/" && q && tag !== "INPUT" && tag !== "TEXTAREA" && tag !== "SELECT") {
      event.preventDefault();
      q.focus();
      q.select();
    }
  });
})();
