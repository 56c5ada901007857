// Live pages: every element with data-live is fetched again every 2 s and replaced, while
// the "live" box (where there is one) stays checked. Nothing else runs: every page reads and
// acts without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelectorAll("[data-live][id]");
  if (live.length === 0) return;
  const box = document.getElementById("live");
  setInterval(async () => {
    if (box && !box.checked) return;
    if (document.activeElement && document.activeElement.closest("form")) return;
    let response;
    try {
      response = await fetch(location.href, { credentials: "same-origin" });
    } catch (_) {
      return;
    }
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const element of document.querySelectorAll("[data-live][id]")) {
      const replacement = fresh.getElementById(element.id);
      if (replacement) element.replaceWith(document.importNode(replacement, true));
    }
  }, 2000);
});
