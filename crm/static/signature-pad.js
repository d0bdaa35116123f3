/* Signature pads, for any page: every <canvas class="sigpad" data-signature-input="ID"> writes what is
   drawn on it, as a PNG data URL (data:image/png;base64,...), into the hidden input with id ID. A button
   with data-signature-clear="ID" clears the pad and the input. Pointer events, so a finger, a pen and a
   mouse all work (the CSS sets touch-action:none so the page does not scroll while signing). A value
   already in the input (a form shown again after an error) is drawn back onto the pad. */
(function () {
  "use strict";

  function wire(canvas) {
    var input = document.getElementById(canvas.getAttribute("data-signature-input"));
    if (!input || canvas.getAttribute("data-sigpad-ready")) { return; }
    canvas.setAttribute("data-sigpad-ready", "1");
    var ctx = canvas.getContext("2d");
    var drawing = false;
    var last = null;

    function size() {
      var rect = canvas.getBoundingClientRect();
      return { w: Math.max(1, Math.round(rect.width)), h: Math.max(1, Math.round(rect.height)) };
    }

    function pen() {
      ctx.lineWidth = 2.2;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.strokeStyle = "#111";
      ctx.fillStyle = "#111";
    }

    function restore() {
      if (!input.value || input.value.indexOf("data:image/png;base64,") !== 0) { return; }
      var img = new Image();
      img.onload = function () { var s = size(); ctx.drawImage(img, 0, 0, s.w, s.h); };
      img.src = input.value;
    }

    // Sharp lines on high-density screens: the bitmap follows the CSS size times the pixel ratio.
    function resize() {
      var ratio = window.devicePixelRatio || 1;
      var s = size();
      canvas.width = Math.round(s.w * ratio);
      canvas.height = Math.round(s.h * ratio);
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      pen();
      restore();
    }

    // Exported at CSS size on white, so the PNG stays small whatever the screen density.
    function save() {
      var s = size();
      var out = document.createElement("canvas");
      out.width = s.w;
      out.height = s.h;
      var octx = out.getContext("2d");
      octx.fillStyle = "#fff";
      octx.fillRect(0, 0, s.w, s.h);
      octx.drawImage(canvas, 0, 0, s.w, s.h);
      input.value = out.toDataURL("image/png");
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function point(event) {
      var rect = canvas.getBoundingClientRect();
      return { x: event.clientX - rect.left, y: event.clientY - rect.top };
    }

    canvas.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      if (canvas.setPointerCapture) { canvas.setPointerCapture(event.pointerId); }
      drawing = true;
      last = point(event);
      ctx.beginPath();
      ctx.arc(last.x, last.y, ctx.lineWidth / 2, 0, Math.PI * 2);
      ctx.fill();
    });
    canvas.addEventListener("pointermove", function (event) {
      if (!drawing) { return; }
      event.preventDefault();
      var p = point(event);
      ctx.beginPath();
      ctx.moveTo(last.x, last.y);
      ctx.lineTo(p.x, p.y);
      ctx.stroke();
      last = p;
    });
    function finish() {
      if (!drawing) { return; }
      drawing = false;
      last = null;
      save();
    }
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    canvas.addEventListener("pointerleave", finish);

    canvas.sigpadClear = function () {
      var s = size();
      ctx.clearRect(0, 0, s.w, s.h);
      input.value = "";
      input.dispatchEvent(new Event("change", { bubbles: true }));
    };

    resize();
    window.addEventListener("resize", resize);
  }

  function wireAll(root) {
    var scope = root || document;
    Array.prototype.forEach.call(scope.querySelectorAll("canvas.sigpad[data-signature-input]"), wire);
    Array.prototype.forEach.call(scope.querySelectorAll("[data-signature-clear]"), function (button) {
      if (button.getAttribute("data-sigpad-ready")) { return; }
      button.setAttribute("data-sigpad-ready", "1");
      button.addEventListener("click", function (event) {
        event.preventDefault();
        var id = button.getAttribute("data-signature-clear");
        Array.prototype.forEach.call(document.querySelectorAll("canvas.sigpad"), function (canvas) {
          if (canvas.getAttribute("data-signature-input") === id && canvas.sigpadClear) { canvas.sigpadClear(); }
        });
      });
    });
  }

  // For pages that add pads after load.
  window.crmSignaturePads = { wire: wireAll };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { wireAll(); });
  } else {
    wireAll();
  }
})();
