// The reply box of a case page: Enter sends, Shift+Enter adds a line, and "/" opens the
// canned replies (filtered by what follows the "/"; arrows move, Enter or a click puts
// the text into the box, still editable; Escape closes). Everything is shown with
// textContent: a canned reply written by an agent is text, never markup.
(function () {
  "use strict";
  const box = document.getElementById("reply-text");
  const list = document.getElementById("canned-list");
  if (!box || !list) return;
  const form = box.form;
  let replies = null;   // loaded once, on the first "/"
  let shown = [];
  let active = 0;
  let slash = -1;       // where the "/" that opened the list sits in the text

  async function load() {
    if (replies) return replies;
    const response = await fetch(box.dataset.cannedUrl, {credentials: "same-origin"});
    replies = response.ok ? (await response.json()).canned : [];
    return replies;
  }

  function close() {
    list.hidden = true;
    slash = -1;
    box.removeAttribute("aria-activedescendant");
  }

  function query() {
    return box.value.slice(slash + 1, box.selectionStart).toLowerCase();
  }

  function render() {
    const q = query();
    shown = replies.filter(function (r) {
      return !q || r.title.toLowerCase().includes(q) || r.text.toLowerCase().includes(q);
    });
    active = Math.min(active, Math.max(shown.length - 1, 0));
    list.replaceChildren(...(shown.length ? shown.map(function (r, i) {
      const li = document.createElement("li");
      li.id = "canned-" + i;
      li.setAttribute("role", "option");
      li.className = i === active ? "active" : "";
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      const preview = document.createElement("small");
      preview.textContent = r.text;
      li.append(document.createTextNode(r.title), preview);
      li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(i); });
      return li;
    }) : [Object.assign(document.createElement("li"), {textContent: box.dataset.cannedNone})]));
    if (shown.length) {
      box.setAttribute("aria-activedescendant", "canned-" + active);
      document.getElementById("canned-" + active).scrollIntoView({block: "nearest"});
    }
    list.hidden = false;
  }

  function choose(i) {
    const reply = shown[i];
    if (!reply) return;
    // The "/query" is replaced by the reply's text; what was around it stays.
    const before = box.value.slice(0, slash);
    const after = box.value.slice(box.selectionStart);
    box.value = before + reply.text + after;
    const caret = (before + reply.text).length;
    close();
    box.focus();
    box.setSelectionRange(caret, caret);
  }

  box.addEventListener("input", async function () {
    const caret = box.selectionStart;
    if (slash < 0 && box.value[caret - 1] === "/" && (caret === 1 || /\s/.test(box.value[caret - 2]))) {
      slash = caret - 1;
      active = 0;
      await load();
    }
    if (slash >= 0) {
      if (box.value[slash] !== "/" || caret <= slash) { close(); return; }
      render();
    }
  });

  box.addEventListener("keydown", function (event) {
    if (event.isComposing || event.keyCode === 229) return;  // an IME is composing Chinese
    if (!list.hidden) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        active = (active + (event.key === "ArrowDown" ? 1 : -1) + shown.length) % Math.max(shown.length, 1);
        render();
        return;
      }
      if (event.key === "Enter" || event.key === "Tab") {
        if (shown.length) { event.preventDefault(); choose(active); return; }
      }
      if (event.key === "Escape") { event.preventDefault(); close(); return; }
    }
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (box.value.trim()) form.requestSubmit();
    }
  });

  box.addEventListener("blur", close);
})();
