// prefline annotation UI: keyboard shortcuts (time on task is measured by the server). No inline scripts (CSP).
(function () {
  "use strict";
  var form = document.getElementById("task-form");
  if (!form) { return; }
  var kind = form.getAttribute("data-kind");

  function pick(id) {
    var el = document.getElementById(id);
    if (el) { el.checked = true; el.dispatchEvent(new Event("change", { bubbles: true })); }
  }

  function nextLikert(score) {
    var sets = form.querySelectorAll("fieldset.likert");
    for (var i = 0; i < sets.length; i++) {
      if (!sets[i].querySelector("input:checked")) {
        pick("score-" + sets[i].getAttribute("data-criterion") + "-" + score);
        return;
      }
    }
  }

  var pairKeys = { "1": "choice-left", "a": "choice-left", "2": "choice-right",
    "b": "choice-right", "3": "choice-tie", "t": "choice-tie", "4": "choice-both_bad",
    "x": "choice-both_bad", "q": "strength-slight", "w": "strength-clear", "e": "strength-strong" };

  document.addEventListener("keydown", function (ev) {
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") {
      ev.preventDefault();
      if (form.reportValidity()) { form.requestSubmit(); }
      return;
    }
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "TEXTAREA" || tag === "INPUT" && ev.target.type === "text" || tag === "SELECT") { return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var key = ev.key.toLowerCase();
    if (kind === "pairwise" && pairKeys[key]) { pick(pairKeys[key]); ev.preventDefault(); }
    else if (kind === "rating" && /^[1-5]$/.test(key)) { nextLikert(key); ev.preventDefault(); }
    else if (key === "r") { var r = document.getElementById("rationale"); if (r) { r.focus(); ev.preventDefault(); } }
  });
})();
