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

  // Ranking: each letter key gives that response the next free rank (best first);
  // Backspace takes back the worst rank given so far. The selects stay the truth, so
  // keys and mouse can be mixed.
  function rankSelects() { return form.querySelectorAll("select[data-key]"); }

  function rankByKey(key) {
    var selects = rankSelects(), target = null, top = 0;
    for (var i = 0; i < selects.length; i++) {
      var v = parseInt(selects[i].value || "0", 10);
      if (v > top) { top = v; }
      if (selects[i].getAttribute("data-key") === key) { target = selects[i]; }
    }
    if (!target) { return false; }
    if (!target.value && top < selects.length) {
      target.value = String(top + 1);
      target.dispatchEvent(new Event("change", { bubbles: true }));
    }
    return true;
  }

  function unrankLast() {
    var selects = rankSelects(), last = null;
    for (var i = 0; i < selects.length; i++) {
      if (selects[i].value && (!last || parseInt(selects[i].value, 10) > parseInt(last.value, 10))) {
        last = selects[i];
      }
    }
    if (last) { last.value = ""; last.dispatchEvent(new Event("change", { bubbles: true })); }
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
    else if (kind === "ranking" && /^[a-j]$/.test(key) && rankByKey(key)) { ev.preventDefault(); }
    else if (kind === "ranking" && ev.key === "Backspace") { unrankLast(); ev.preventDefault(); }
    else if (key === "u" && document.getElementById("undo")) { ev.preventDefault(); document.getElementById("undo").click(); }
    else if (key === "r") { var r = document.getElementById("rationale"); if (r) { r.focus(); ev.preventDefault(); } }
  });
})();
