// ucmha support dashboard: progressive enhancements only; every page works without this file.
(function () {
  "use strict";
  // Handlers are delegated from the document, so parts of the page swapped in live keep them.
  // Filters apply as soon as a select changes.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("select[data-autosubmit]") && select.form) {
      select.form.requestSubmit ? select.form.requestSubmit() : select.form.submit();
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    // Ask before a write that changes where a pair's traffic goes.
    if (form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    // No double submits.
    if ((form.getAttribute("method") || "").toLowerCase() === "post") {
      form.setAttribute("data-submitting", "");
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }
  });
  // Coming back through the history re-enables them.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[method=post] button[type=submit]").forEach(function (b) { b.disabled = false; });
    document.querySelectorAll("form[data-submitting]").forEach(function (f) { f.removeAttribute("data-submitting"); });
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
  // A form someone has started filling in is not swapped away under them.
  document.addEventListener("input", function (event) {
    var form = event.target && event.target.form;
    if (form) { form.setAttribute("data-dirty", ""); }
  });

  // Live pages: ask for this page again every few seconds with its ETag; the server answers 304
  // unless something it shows changed, and then the page's live regions are swapped in place.
  var main = document.querySelector("main[data-live]");
  if (!main || !window.fetch || !window.DOMParser) { return; }
  var every = parseInt(main.getAttribute("data-live"), 10) || 3000;
  var etag = main.getAttribute("data-etag");
  var note = main.querySelector("[data-live-note]");
  var timer = null;
  var busy = false;
  var stopped = false;

  function say(text) { if (note) { note.textContent = text; } }

  function busyHere(region) {
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) { return true; }
    return region.querySelector("form[data-dirty], form[data-submitting]") !== null;
  }

  function openDetails(region) {
    var open = {};
    region.querySelectorAll("details[open]").forEach(function (d) {
      var line = d.closest("[data-event-id]");
      if (line) { open[line.getAttribute("data-event-id")] = true; }
    });
    region.querySelectorAll("details:not([open])").forEach(function (d) {
      var line = d.closest("[data-event-id]");
      if (line) { open[line.getAttribute("data-event-id")] = false; }
    });
    return open;
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var freshMain = fresh.querySelector("main[data-live]");
    if (!freshMain) { return false; }
    var skipped = false;
    document.querySelectorAll("[data-live-region]").forEach(function (region) {
      var next = region.id && fresh.getElementById(region.id);
      if (!next) { return; }
      if (busyHere(region)) { skipped = true; return; }
      var open = openDetails(region);
      next.querySelectorAll("details").forEach(function (d) {
        var line = d.closest("[data-event-id]");
        var id = line && line.getAttribute("data-event-id");
        if (id && Object.prototype.hasOwnProperty.call(open, id)) { d.open = open[id]; }
      });
      region.replaceWith(document.importNode(next, true));
    });
    if (!skipped) { etag = freshMain.getAttribute("data-etag"); }  // else: ask again next time
    return true;
  }

  function poll() {
    timer = null;
    if (busy || stopped || document.visibilityState === "hidden") { return; }
    busy = true;
    var headers = {"Accept": "text/html"};
    if (etag) { headers["If-None-Match"] = 'W/"' + etag + '"'; }
    fetch(window.location.href, {headers: headers, credentials: "same-origin", cache: "no-store",
                                 redirect: "manual"})
      .then(function (response) {
        if (response.status === 304) { return null; }
        if (response.status !== 200 || response.type === "opaqueredirect") {
          // Signed out, or the page is gone: stop, and say so; a reload shows why.
          stopped = true;
          say(" · stopped: reload the page");
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined && !swap(html)) { stopped = true; say(" · stopped: reload the page"); }
        if (!stopped) { say(" · checked " + new Date().toTimeString().slice(0, 8)); }
      })
      .catch(function () { say(" · the server did not answer; trying again"); })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() {
    if (timer === null && !stopped && document.visibilityState !== "hidden") { timer = window.setTimeout(poll, every); }
  }

  // Paused while the tab is hidden; on its return, look at once.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      if (timer !== null) { window.clearTimeout(timer); timer = null; }
      say(" · paused while hidden");
    } else if (timer === null && !busy) {
      poll();
    }
  });
  schedule();
})();
