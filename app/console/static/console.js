// crmsync console: show <time datetime=...> in the browser's time zone (UTC stays in the title).
// No library; runs on load and after every htmx swap. Without JS the UTC text stays.
(function () {
  "use strict";
  function localize(root) {
    var nodes = (root || document).querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < nodes.length; i++) {
      var d = new Date(nodes[i].getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      nodes[i].textContent = d.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"
      });
      nodes[i].setAttribute("data-local", "1");
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:load", function (e) { localize(e.detail && e.detail.elt ? e.detail.elt.parentNode || document : document); });
})();
