// The report's only script. Its sha256 is pinned in the page's Content-Security-Policy
// (html.py computes it from this file), so no other inline script can run.
(function () {
  "use strict";
  var zoom = document.getElementById("zoom");
  document.querySelectorAll("img.thumb").forEach(function (img) {
    img.addEventListener("click", function () {
      zoom.querySelector("img").src = img.src;
      zoom.querySelector("p").textContent = img.alt;
      zoom.classList.add("open");
    });
  });
  zoom.addEventListener("click", function () { zoom.classList.remove("open"); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") zoom.classList.remove("open"); });
  document.querySelectorAll(".controls").forEach(function (ctl) {
    var grid = document.getElementById(ctl.dataset.grid);
    var cls = ctl.querySelector(".class-filter"), wrong = ctl.querySelector(".wrong-filter");
    var orig = ctl.querySelector(".toggle-original"), count = ctl.querySelector(".count");
    function apply() {
      var shown = 0, rows = grid.querySelectorAll("tr.sample");
      rows.forEach(function (tr) {
        var ok = (!cls.value || tr.dataset.predicted === cls.value) && (!wrong || !wrong.checked || tr.dataset.correct === "false");
        tr.style.display = ok ? "" : "none";
        if (ok) shown += 1;
      });
      count.textContent = shown + " of " + rows.length + " shown";
    }
    cls.addEventListener("change", apply);
    if (wrong) wrong.addEventListener("change", apply);
    if (orig) orig.addEventListener("change", function () {
      grid.querySelectorAll("tr.sample").forEach(function (tr) {
        var source = tr.querySelector("img.original");
        tr.querySelectorAll("img.overlay").forEach(function (img) {
          // the overlay's own image, kept in memory on the first toggle: the page embeds
          // each image once
          if (!img.overlaySrc) img.overlaySrc = img.src;
          img.src = orig.checked ? source.src : img.overlaySrc;
        });
      });
    });
    apply();
  });
})();
