/* The HCP picker (templates/_picker.html): search as you type, choose with a tap or the keyboard.

   Progressive enhancement: without this script the form has a search field, a "Find" button and a select.
   Here the select stays the form's value (hidden), the Find button goes, and the matches of
   GET /hcps/pick?q=... (the server keeps them to what the viewer may pick) show under the field.
   The chosen HCPs show as chips with a "Remove" button. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text) { node.textContent = text; }
    return node;
  }

  function setup(box) {
    var field = box.getAttribute("data-key");
    var multiple = box.hasAttribute("data-multiple");
    var url = box.getAttribute("data-search-url");
    var input = document.getElementById(field + "-q");
    var select = document.getElementById(field);
    var hint = document.getElementById(field + "-hint");
    if (!input || !select || !url || !window.fetch) { return; }

    var find = box.querySelector(".picker-find");
    if (find) { find.parentNode.removeChild(find); }
    var chooseLabel = box.querySelector(".picker-choose");
    if (chooseLabel) { chooseLabel.hidden = true; }
    select.hidden = true;
    // The typed text is not a value: keep it out of the submitted form.
    input.removeAttribute("name");
    input.value = "";
    for (var i = select.options.length - 1; i >= 0; i--) {
      if (select.options[i].value && !select.options[i].selected) { select.remove(i); }
    }

    var chosen = el("ul", "picker-chosen");
    chosen.setAttribute("aria-label", multiple ? "Chosen HCPs" : "Chosen HCP");
    var results = el("ul", "picker-results");
    results.id = field + "-results";
    results.setAttribute("role", "listbox");
    results.hidden = true;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", results.id);
    if (hint) { hint.setAttribute("aria-live", "polite"); hint.textContent = "Type at least two letters."; }
    box.insertBefore(chosen, input.parentNode);
    input.parentNode.parentNode.insertBefore(results, input.parentNode.nextSibling);

    var items = [];
    var active = -1;
    var seq = 0;
    var timer = null;

    function selectedIds() {
      var ids = {};
      for (var k = 0; k < select.options.length; k++) {
        if (select.options[k].value && select.options[k].selected) { ids[select.options[k].value] = true; }
      }
      return ids;
    }

    function renderChosen() {
      chosen.textContent = "";
      for (var k = 0; k < select.options.length; k++) {
        var opt = select.options[k];
        if (!opt.value || !opt.selected) { continue; }
        var li = el("li", "chip");
        li.appendChild(el("span", "chip-name", opt.textContent));
        var remove = el("button", "chip-remove secondary", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", "Remove " + opt.textContent);
        remove.setAttribute("data-value", opt.value);
        remove.addEventListener("click", function (ev) {
          var value = ev.currentTarget.getAttribute("data-value");
          for (var m = select.options.length - 1; m >= 0; m--) {
            if (select.options[m].value === value) { select.remove(m); }
          }
          renderChosen();
          select.dispatchEvent(new Event("change", {bubbles: true}));
          input.focus();
        });
        li.appendChild(remove);
        chosen.appendChild(li);
      }
      chosen.hidden = !chosen.firstChild;
    }

    function close() {
      results.hidden = true;
      results.textContent = "";
      items = [];
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function choose(item) {
      if (!multiple) {
        for (var m = select.options.length - 1; m >= 0; m--) {
          if (select.options[m].value) { select.remove(m); }
        }
      }
      if (!selectedIds()[String(item.id)]) {
        var opt = new Option(item.name + (item.detail ? " · " + item.detail : ""), String(item.id), true, true);
        select.add(opt);
      }
      input.value = "";
      close();
      renderChosen();
      if (hint) { hint.textContent = item.name + " chosen."; }
      select.dispatchEvent(new Event("change", {bubbles: true}));
    }

    function highlight(index) {
      var nodes = results.children;
      for (var k = 0; k < nodes.length; k++) { nodes[k].setAttribute("aria-selected", k === index ? "true" : "false"); }
      active = index;
      if (index >= 0 && nodes[index]) {
        input.setAttribute("aria-activedescendant", nodes[index].id);
        nodes[index].scrollIntoView({block: "nearest"});
      }
    }

    function show(found) {
      var already = selectedIds();
      results.textContent = "";
      items = [];
      for (var k = 0; k < found.length; k++) {
        if (already[String(found[k].id)]) { continue; }
        var item = found[k];
        var li = el("li", "picker-option");
        li.id = field + "-option-" + item.id;
        li.setAttribute("role", "option");
        li.appendChild(el("strong", "", item.name));
        if (item.detail) { li.appendChild(el("span", "muted", " " + item.detail)); }
        li.addEventListener("mousedown", function (ev) { ev.preventDefault(); });
        li.addEventListener("click", (function (it) { return function () { choose(it); }; })(item));
        results.appendChild(li);
        items.push(item);
      }
      results.hidden = !items.length;
      input.setAttribute("aria-expanded", items.length ? "true" : "false");
      if (hint) { hint.textContent = items.length ? items.length + " found." : "No HCP matches."; }
      highlight(items.length ? 0 : -1);
    }

    function search() {
      var q = input.value.trim();
      if (q.length < 2) { close(); return; }
      var mine = ++seq;
      var sep = url.indexOf("?") >= 0 ? "&" : "?";
      fetch(url + sep + "q=" + encodeURIComponent(q), {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (r) { return r.ok ? r.json() : {items: []}; })
        .then(function (body) { if (mine === seq) { show(body.items || []); } })
        .catch(function () { if (hint) { hint.textContent = "Search failed; try again."; } });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(search, 200);
    });
    input.addEventListener("keydown", function (ev) {
      if (ev.key === "ArrowDown" && items.length) { ev.preventDefault(); highlight(Math.min(active + 1, items.length - 1)); }
      else if (ev.key === "ArrowUp" && items.length) { ev.preventDefault(); highlight(Math.max(active - 1, 0)); }
      else if (ev.key === "Enter") {
        ev.preventDefault();  // Enter picks; it never sends the form from the search field
        if (active >= 0 && items[active]) { choose(items[active]); }
      } else if (ev.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { setTimeout(close, 150); });
    renderChosen();
  }

  // Each picker includes this script; the first run sets up every picker on the page, later runs none.
  var boxes = document.querySelectorAll("[data-hcp-picker]:not([data-picker-ready])");
  for (var n = 0; n < boxes.length; n++) { boxes[n].setAttribute("data-picker-ready", ""); setup(boxes[n]); }
})();
