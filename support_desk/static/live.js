// The live console: every case change arrives as a server-sent event (GET /console/events)
// and the open page re-reads what it shows. The queue page re-reads its table from the
// server (rendered and escaped there, the page's own filters kept); the case page re-reads
// its transcript and status as JSON and renders text with textContent only. A new handoff
// raises a notification, a short sound (mutable) and an unread count in the tab title.
// EventSource reconnects by itself; after a reconnect the page re-reads everything, so a
// desk restart misses nothing.
(function () {
  "use strict";
  var wordsNode = document.getElementById("live-words");
  if (!wordsNode || !window.EventSource) return;
  var words = JSON.parse(wordsNode.textContent);
  var MUTE_KEY = "pos1000.console.muted";
  var baseTitle = document.title;
  var unread = 0;

  // --- header controls: alerts (asks permission, from a click) and sound -----------------
  var header = document.querySelector("header");
  var spacer = header && header.querySelector(".spacer");
  function control(id, text, onClick) {
    var button = document.createElement("button");
    button.type = "button";
    button.id = id;
    button.textContent = text;
    button.addEventListener("click", onClick);
    if (spacer) header.insertBefore(button, spacer);
    return button;
  }
  var alertsButton = control("live-alerts", words.alerts, function () {
    if (!window.Notification) return;
    Notification.requestPermission().then(showAlertsState);
  });
  function showAlertsState() {
    var on = window.Notification && Notification.permission === "granted";
    alertsButton.textContent = on ? words.alerts_on : words.alerts;
    alertsButton.disabled = on || !window.Notification || Notification.permission === "denied";
  }
  showAlertsState();
  function muted() { return localStorage.getItem(MUTE_KEY) === "1"; }
  var soundButton = control("live-sound", "", function () {
    localStorage.setItem(MUTE_KEY, muted() ? "0" : "1");
    showSoundState();
  });
  function showSoundState() { soundButton.textContent = muted() ? words.sound_off : words.sound_on; }
  showSoundState();
  var offline = document.createElement("span");
  offline.id = "live-offline";
  offline.textContent = words.offline;
  offline.hidden = true;
  if (spacer) header.insertBefore(offline, spacer);

  // --- a new handoff: count, sound, notification -------------------------------------------
  function showUnread() { document.title = unread ? "(" + unread + ") " + baseTitle : baseTitle; }
  function looked() {
    if (document.visibilityState === "visible" && unread) { unread = 0; showUnread(); }
  }
  ["focus", "click", "keydown"].forEach(function (name) { window.addEventListener(name, looked); });
  document.addEventListener("visibilitychange", looked);

  var audio = null;
  function beep() {
    if (muted()) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.2, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.3);
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.3);
    } catch (e) { /* no audio device: the title and the notification still tell */ }
  }
  function notify(caseId) {
    if (!window.Notification || Notification.permission !== "granted") return;
    var note = new Notification(words.new_case, {body: "#" + caseId, tag: "case-" + caseId});
    note.onclick = function () { window.focus(); location.href = "/console/cases/" + caseId; };
  }
  function newHandoff(caseId) {
    unread += 1;
    showUnread();
    beep();
    notify(caseId);
  }

  // --- the queue page: its table, re-read from the server ------------------------------------
  var queueTimer = null;
  function refreshQueue() {
    if (!document.getElementById("queue")) return;
    clearTimeout(queueTimer);  // a burst of changes costs one read
    queueTimer = setTimeout(function () {
      fetch(location.href, {credentials: "same-origin"}).then(function (response) {
        if (!response.ok || response.redirected) return null;
        return response.text();
      }).then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("queue");
        var current = document.getElementById("queue");
        if (fresh && current) {
          var table = document.importNode(fresh, true);
          current.replaceWith(table);
          if (window.deskLocalize) window.deskLocalize(table);  // times in the agent's zone
        }
      }).catch(function () { /* the next change or reconnect reads it again */ });
    }, 150);
  }

  // --- the case page: transcript and status as JSON, shown as text -------------------------
  var box = document.getElementById("transcript");
  var caseId = box && box.dataset.caseId;
  function refreshCase(reread) {
    if (!caseId) return;
    var url = "/console/live/cases/" + caseId + (reread ? "?reread=1" : "");
    fetch(url, {credentials: "same-origin"}).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (data) {
      if (!data) return;
      var roles = JSON.parse(box.dataset.roles);
      box.replaceChildren.apply(box, data.transcript.map(function (m) {
        var div = document.createElement("div");
        div.className = "msg msg-" + (m.kind === "note" ? "note" : m.role);
        var meta = document.createElement("small");
        // The same line as the server renders: role, author, local time, delivery state.
        meta.textContent = roles[m.role] + (m.author ? " " + m.author : "") + " · " +
          (window.deskTime ? window.deskTime(m.at, "time") : m.at.slice(11, 16) + " UTC") +
          (m.delivery_text ? " · " + m.delivery_text : "");
        div.append(meta, document.createTextNode(m.text));
        if (m.attachment_id) {  // a picture the merchant sent, served to agents only
          var img = document.createElement("img");
          img.className = "attachment";
          img.src = "/console/attachments/" + encodeURIComponent(m.attachment_id);
          img.alt = words.attachment_alt;
          div.append(img);
        }
        return div;
      }));
      var status = document.getElementById("status");
      if (status) status.textContent = data.status_text;
      var session = document.getElementById("platform-session");
      if (session) session.textContent = data.session || "";
      // A WeCom agent took the case: the reply box closes and says where the answer is.
      var blocked = document.getElementById("reply-blocked");
      if (blocked) {
        blocked.textContent = data.reply_blocked || "";
        blocked.hidden = !data.reply_blocked;
      }
      var form = document.getElementById("reply-form");
      if (form && data.reply_blocked) form.hidden = true;
    }).catch(function () { /* the next change or reconnect reads it again */ });
  }

  // --- the stream ---------------------------------------------------------------------------
  var lost = false;
  function resync() { refreshQueue(); refreshCase(true); }
  function handle(event) {
    if (event.type !== "case") return;
    if (event.change === "created") newHandoff(event.id);
    refreshQueue();
    if (String(event.id) === caseId) refreshCase(false);
  }
  function connect() {
    var source = new EventSource("/console/events");
    source.addEventListener("open", function () {
      offline.hidden = true;
      if (lost) { lost = false; resync(); }
    });
    source.addEventListener("case", function (message) {
      try { handle(JSON.parse(message.data)); } catch (e) { /* not an event of ours */ }
    });
    source.addEventListener("error", function () {
      lost = true;
      offline.hidden = false;
      // EventSource retries by itself unless the answer was not a stream (e.g. a proxy's
      // error page while the desk restarts); then start a new one.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    });
  }
  connect();
})();
