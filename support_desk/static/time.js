// Times in the agent's own time zone. The pages render every stored time as
// <time datetime="ISO UTC" data-local="datetime|time">… UTC</time> (readable without
// JavaScript); this rewrites them in the browser's zone. window.deskTime(iso, style) is
// shared with scripts that add times later (the live transcript).
(function () {
  "use strict";
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  // formatToParts with fixed fields: "2026-12-02 09:30" whatever the browser's locale.
  const format = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function deskTime(iso, style) {
    const date = new Date(iso);
    if (!iso || isNaN(date.getTime())) return iso ? String(iso) : "";
    const p = {};
    format.formatToParts(date).forEach(function (part) { p[part.type] = part.value; });
    const clock = p.hour + ":" + p.minute;
    if (style !== "time") return p.year + "-" + p.month + "-" + p.day + " " + clock;
    // A transcript line from another day says which day.
    return deskTime(new Date().toISOString()).slice(0, 10) === p.year + "-" + p.month + "-" + p.day
      ? clock : p.month + "-" + p.day + " " + clock;
  }

  function localize(root) {
    (root || document).querySelectorAll("time[data-local]").forEach(function (el) {
      if (!el.title) el.title = el.textContent;  // the UTC text stays one hover away
      el.textContent = deskTime(el.getAttribute("datetime"), el.dataset.local);
    });
    document.querySelectorAll("[data-zone-name]").forEach(function (el) { el.textContent = zone; });
    // Forms with local times send the zone they were typed in.
    document.querySelectorAll("input[data-browser-zone]").forEach(function (el) { el.value = zone; });
  }

  window.deskTime = deskTime;
  window.deskTimeZone = zone;
  window.deskLocalize = localize;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localize(document); });
  } else {
    localize(document);
  }
})();
