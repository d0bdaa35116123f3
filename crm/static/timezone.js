/* First sign-in: propose the browser's time zone as the user's setting (only while none is chosen; the
   server ignores it otherwise), then show this page again in that zone. Without JavaScript, pages show
   UTC until the user picks a zone on the settings page. */
(function () {
  "use strict";
  var me = document.currentScript;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone || !me || !window.fetch || !window.sessionStorage) { return; }
  if (sessionStorage.getItem("crm-tz-proposed")) { return; }
  sessionStorage.setItem("crm-tz-proposed", "1");
  var body = new URLSearchParams();
  body.set("time_zone", zone);
  body.set("only_if_unset", "1");
  body.set("csrf_token", me.getAttribute("data-csrf"));
  fetch(me.getAttribute("data-settings-url"), {method: "POST", body: body, credentials: "same-origin"})
    .then(function (r) { if (r.status === 204 && zone !== "UTC") { window.location.reload(); } })
    .catch(function () {});
})();
