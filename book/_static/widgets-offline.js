// Loaded on pages with widgets, between require.js and the widget manager (embed-amd.js), by
// `nb_ipywidgets_js` in _config.yml. It fixes two things that the manager gets wrong on a site
// that serves it from its own _static folder and typesets math with MathJax 3.
(function () {
  "use strict";
  var vendor = new URL("vendor/html-manager-1.0.15", document.currentScript.src).href;

  // 1. Fonts. embed-amd.js resolves its Font Awesome files against the AMD id of its own
  // modules, which require.js places beside the page (notebooks/@jupyter-widgets/...), so
  // every widget page asked for fonts that are not there. Map those ids onto the folder the
  // files really are in.
  window.requirejs.config({
    paths: {
      "@jupyter-widgets/html-manager": vendor + "/index",
      "@jupyter-widgets/html-manager/dist": vendor,
    },
  });

  // 2. Math in widget labels. The manager typesets a description with the MathJax 2 call
  // MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); MathJax 3 has no Hub, so every
  // slider with a description threw a TypeError. Forward that call to MathJax 3.
  function installHub() {
    var mj = window.MathJax;
    if (!mj || !mj.version || mj.version[0] !== "3" || mj.Hub) {
      return;
    }
    mj.Hub = {
      Queue: function () {
        Array.prototype.forEach.call(arguments, function (job) {
          if (Array.isArray(job) && job[0] === "Typeset" && job[2] && mj.typesetPromise) {
            mj.typesetPromise([job[2]]).catch(function (err) {
              console.warn("MathJax could not typeset a widget label:", err);
            });
          }
        });
      },
    };
  }
  installHub();
  document.addEventListener("DOMContentLoaded", installHub);
})();
