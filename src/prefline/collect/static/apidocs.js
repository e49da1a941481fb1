// Starts Swagger UI (/docs) or ReDoc (/redoc) on the app's OpenAPI spec. A file, not an
// inline script, so the pages run under the app's CSP (script-src 'self').
(function () {
  "use strict";
  var root = document.getElementById("apidocs");
  if (!root) { return; }
  var spec = root.getAttribute("data-spec-url");
  if (root.getAttribute("data-viewer") === "redoc") {
    window.Redoc.init(spec, { hideDownloadButton: false }, root);
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: spec, dom_id: "#apidocs", deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis, window.SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
})();
