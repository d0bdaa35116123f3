/* The visit form: local time with the browser's UTC offset, and more sample rows.

   A datetime-local input has no offset, and the server never guesses one: this script fills the hidden
   tz_offset field (minutes east of UTC) for the date-time entered, so daylight saving is right for that
   day. A saved draft is rendered in UTC (data-utc) and shown here in local time instead. */
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function localValue(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
      "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  // "YYYY-MM-DDTHH:MM" without an offset is parsed as local time by Date.
  function offsetAt(value) {
    var d = value ? new Date(value) : new Date();
    if (isNaN(d.getTime())) { d = new Date(); }
    return -d.getTimezoneOffset();
  }

  var input = document.getElementById("occurred_at");
  var hidden = document.getElementById("tz_offset");
  var choice = document.getElementById("tz_choice");
  if (input && hidden) {
    var utc = input.getAttribute("data-utc");
    if (utc) {
      var d = new Date(utc);
      if (!isNaN(d.getTime())) {
        input.value = localValue(d);
        if (choice) { choice.value = ""; }
      }
    } else if (input.hasAttribute("data-default-now") && !input.value) {
      input.value = localValue(new Date());
    }
    var sync = function () { hidden.value = String(offsetAt(input.value)); };
    sync();
    input.addEventListener("input", sync);
    input.addEventListener("change", sync);
    if (input.form) { input.form.addEventListener("submit", sync); }
  }

  var add = document.querySelector("[data-add-sample]");
  var template = document.getElementById("sample-row-template");
  if (add && template && template.content) {
    add.hidden = false;
    add.addEventListener("click", function () {
      var rows = document.getElementById(add.getAttribute("data-add-sample"));
      if (rows) { rows.appendChild(template.content.cloneNode(true)); }
    });
  }
})();
