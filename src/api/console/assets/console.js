// Sektorbro console: the one script (no build step, no dependencies). The pages work without it;
// it only asks before irreversible actions and lets a chart's bars be read by keyboard.
(function () {
  "use strict";
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      ev.preventDefault();
    }
  });
  // Each bar carries its value in a <title>; focusing it (Tab) shows the value beside the chart.
  document.querySelectorAll("figure svg").forEach(function (svg) {
    var out = document.createElement("p");
    out.setAttribute("aria-live", "polite");
    out.className = "chart-value";
    svg.parentNode.appendChild(out);
    svg.querySelectorAll("[data-value]").forEach(function (bar) {
      bar.setAttribute("tabindex", "0");
      bar.addEventListener("focus", function () { out.textContent = bar.getAttribute("data-value"); });
      bar.addEventListener("mouseenter", function () { out.textContent = bar.getAttribute("data-value"); });
    });
  });
})();
