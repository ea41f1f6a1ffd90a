// Starts Swagger UI on /api/v1/docs (a file of its own: the page's policy forbids inline script).
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    showExtensions: true,
    showCommonExtensions: true,
    persistAuthorization: false,
  });
})();
