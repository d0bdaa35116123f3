/* Events and call-centre pages: times typed in the viewer's time zone.

   Times are shown by the server in the user's zone (crm/timezones.py). A datetime-local input carries no
   offset and the server never guesses one: for each input with data-offset-field, the named hidden field gets the browser's UTC offset in minutes
   for the date and time entered (so daylight saving is right for that day). */
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function offsetAt(value) {
    var d = value ? new Date(value) : new Date();
    if (isNaN(d.getTime())) { d = new Date(); }
    return -d.getTimezoneOffset();
  }

  var inputs = document.querySelectorAll("input[data-offset-field]");
  for (var j = 0; j < inputs.length; j++) {
    (function (input) {
      var hidden = document.getElementById(input.getAttribute("data-offset-field"));
      if (!hidden) { return; }
      if (input.hasAttribute("data-default-now") && !input.value) {
        var now = new Date();
        input.value = now.getFullYear() + "-" + pad(now.getMonth() + 1) + "-" + pad(now.getDate()) + "T" +
          pad(now.getHours()) + ":" + pad(now.getMinutes());
      }
      var sync = function () { hidden.value = String(offsetAt(input.value)); };
      sync();
      input.addEventListener("change", sync);
      if (input.form) { input.form.addEventListener("submit", sync); }
    })(inputs[j]);
  }

  /* The attendance tick list: "all" ticks every box in one tap. */
  var all = document.querySelector("[data-tick-all]");
  if (all) {
    all.hidden = false;
    all.addEventListener("click", function () {
      var boxes = document.querySelectorAll("input[name='attended']");
      for (var k = 0; k < boxes.length; k++) { boxes[k].checked = true; }
    });
  }
})();
