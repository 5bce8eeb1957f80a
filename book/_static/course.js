// The course's reading aids, on every page (html_js_files in _config.yml); what they
// guarantee is checked in a browser at 1280 px and at 390 px by tests/test_site.py.
//
// 1. A display equation wider than the column is set smaller until it fits, down to 70 %
//    of its size (a phone's column is 358 px; most of the book's equations fit at that).
// 2. Whatever still does not fit (an equation, a table, an output) scrolls inside its own
//    box, and says so: a visible "scroll sideways" hint above it, a shadow at its edge, the
//    table's first column kept in view, and the box reachable with the keyboard (Tab, then
//    the arrow keys) and named for screen readers.
// 3. A picture shown much smaller than it was drawn (a multi-panel figure or a slider's
//    picture on a phone) gets a "Show full size" button: the picture at its own size, in a
//    dialog that scrolls both ways and closes with Escape or its Close button.
(function () {
  "use strict";
  var MIN_SCALE = 0.7;
  var SHRUNK = 1.25; // a picture drawn 25 % wider than shown can be enlarged
  var SCROLLERS = [
    'mjx-container[jax="CHTML"][display="true"]',
    "div.pst-scrollable-table-container",
    "div.cell_output .output.text_html",
    "div.cell_output .output.text_markdown",
    "div.cell_output pre", // printed tables and numbers
  ].join(", ");

  function article() {
    return document.querySelector("article.bd-article");
  }

  function fitEquations(root) {
    root.querySelectorAll('mjx-container[jax="CHTML"][display="true"]').forEach(function (eq) {
      if (eq.dataset.courseSize === undefined) eq.dataset.courseSize = eq.style.fontSize || "";
      eq.style.fontSize = eq.dataset.courseSize;
      var width = eq.clientWidth, needed = eq.scrollWidth;
      if (width > 0 && needed > width + 1) {
        var base = parseFloat(eq.dataset.courseSize) || 100;
        var scale = Math.max(MIN_SCALE, (width - 2) / needed);
        eq.style.fontSize = (base * scale).toFixed(1) + "%";
      }
    });
  }

  function what(box) {
    if (box.matches("mjx-container")) return "Equation";
    if (box.querySelector("table")) return "Table";
    // Code: a cell's own, or a function's source that show_source printed as Markdown.
    if (box.closest(".cell_input, .text_markdown .highlight")) return "Code";
    return "Output";
  }

  function markScrollers(root) {
    root.querySelectorAll(SCROLLERS).forEach(function (box) {
      if (box.parentElement && box.parentElement.closest(SCROLLERS)) return; // the outer box
      var overflows = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("course-overflows", overflows);
      // The hint goes above the box, outside an equation's div.math (a flex row).
      var place = box.matches("mjx-container") && box.closest("div.math") || box;
      var hint = place.previousElementSibling;
      if (!(hint && hint.classList.contains("course-scroll-hint"))) hint = null;
      if (overflows && !hint) {
        hint = document.createElement("div");
        hint.className = "course-scroll-hint";
        hint.textContent = what(box) + " wider than the screen: scroll sideways \u2192";
        place.parentNode.insertBefore(hint, place);
      }
      if (hint) hint.hidden = !overflows;
      if (overflows) {
        if (!box.hasAttribute("tabindex")) {
          box.setAttribute("tabindex", "0");
          box.dataset.courseTabindex = "1";
        }
        if (!box.matches("mjx-container") && !box.hasAttribute("role")) {
          box.setAttribute("role", "region");
          box.setAttribute("aria-label", what(box) + ", scrolls sideways");
        }
      } else if (box.dataset.courseTabindex) {
        box.removeAttribute("tabindex");
        delete box.dataset.courseTabindex;
      }
    });
  }

  var dialog = null;
  function figureDialog() {
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.className = "course-figure-dialog";
    dialog.setAttribute("aria-label", "Picture at full size");
    var close = document.createElement("button");
    close.type = "button";
    close.className = "course-dialog-close";
    close.textContent = "Close";
    close.addEventListener("click", function () { dialog.close(); });
    var pane = document.createElement("div");
    pane.className = "course-dialog-pane";
    pane.setAttribute("tabindex", "0");
    pane.setAttribute("role", "region");
    pane.setAttribute("aria-label", "Picture, scrolls both ways");
    pane.appendChild(document.createElement("img"));
    var note = document.createElement("span");
    note.className = "course-dialog-note";
    note.textContent = "Scroll or drag to see all of the picture.";
    dialog.appendChild(close);
    dialog.appendChild(note);
    dialog.appendChild(pane);
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) dialog.close(); // a tap beside the picture
    });
    document.body.appendChild(dialog);
    return dialog;
  }

  function showFullSize(img) {
    var d = figureDialog(), big = d.querySelector("img");
    big.src = img.currentSrc || img.src; // a slider's picture: the stop shown now
    big.alt = img.alt;
    d.showModal();
    d.querySelector(".course-dialog-close").focus();
  }

  function offerFullSize(root) {
    root.querySelectorAll("img").forEach(function (img) {
      if (img.closest(".course-figure-dialog, a")) return;
      var shown = img.getBoundingClientRect().width;
      var shrunk = shown > 0 && img.naturalWidth > SHRUNK * shown;
      var button = img.courseFullSize;
      if (shrunk && !button) {
        button = document.createElement("button");
        button.type = "button";
        button.className = "course-full-size";
        button.textContent = "Show full size";
        button.addEventListener("click", function () { showFullSize(img); });
        img.insertAdjacentElement("afterend", button);
        img.courseFullSize = button;
      }
      if (button) button.hidden = !shrunk;
    });
  }

  function layout() {
    var root = article();
    if (!root) return;
    fitEquations(root);
    markScrollers(root);
    offerFullSize(root);
  }

  function whenTypeset(then) {
    var mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) mj.startup.promise.then(then, then);
    else then();
  }

  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(layout, 150);
  });
  window.addEventListener("load", function () { whenTypeset(layout); });
  document.addEventListener("DOMContentLoaded", function () { whenTypeset(layout); });
  window.courseLayout = layout; // for the browser tests: lay out again after a change
})();
