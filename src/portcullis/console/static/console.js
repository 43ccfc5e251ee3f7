// Portcullis console: counts down "time left" on pending approvals. Everything else is
// server-rendered; htmx (vendored) only swaps in live updates. No eval, no inline code.
(function () {
  "use strict";
  function tick() {
    var now = Date.now();
    var spans = document.querySelectorAll("[data-expires-in]");
    for (var i = 0; i < spans.length; i++) {
      var el = spans[i];
      if (!el.dataset.deadline) {
        var secs = parseInt(el.dataset.expiresIn, 10);
        el.dataset.deadline = String(now + (isNaN(secs) ? 0 : secs) * 1000);
      }
      var left = Math.max(0, Math.round((Number(el.dataset.deadline) - now) / 1000));
      el.textContent = left > 0 ? left + " s" : "expired";
    }
  }
  setInterval(tick, 1000);
})();
