// Let the Jupyter widget manager find its fonts and chunks in the site's own copy
// (_static/vendor/npm/, laid out like the npm CDN it would otherwise use). The
// manager locates its assets next to the AMD module "@jupyter-widgets/html-manager/
// dist/libembed-amd", which require.js resolves against baseUrl.
// Runs after require.js and before embed-amd.js.
window.require.config({ baseUrl: new URL("vendor/npm/", document.currentScript.src).href });

// ipywidgets' html-manager typesets widget labels with MathJax 2's MathJax.Hub.Queue;
// this site runs MathJax 3, so route those calls to MathJax 3's typesetPromise.
// (Registered before embed-amd.js renders the widgets on DOMContentLoaded.)
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (mj && !mj.Hub && mj.typesetPromise) {
    mj.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        return mj.typesetPromise(element ? [element] : undefined);
      },
    };
  }
});
