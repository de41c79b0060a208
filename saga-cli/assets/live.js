// Live updates: a page whose <main> has data-live="MS" fetches itself every MS milliseconds and
// swaps in the new <main>. Nothing else on the dashboard is scripted.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main) return;
  var every = parseInt(main.getAttribute("data-live"), 10) || 2000;
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var next = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        if (!next) return;
        main.innerHTML = next.innerHTML;
        if (!next.hasAttribute("data-live")) {
          main.removeAttribute("data-live");
          return;
        }
        main.setAttribute("data-refreshed", String(Date.now()));
        window.setTimeout(refresh, every);
      })
      .catch(function () { window.setTimeout(refresh, every * 2); });
  }
  window.setTimeout(refresh, every);
})();
