// The router: #/ (runs), #/run/ID, #/compare/ID,ID,... Views poll the API; nothing reloads.
"use strict";

kiln.timers = [];
kiln.every = function (ms, fn) { kiln.timers.push(setInterval(fn, ms)); };
kiln.showError = function (error) {
  const box = document.getElementById("error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
};

kiln.route = async function () {
  kiln.timers.forEach(clearInterval);
  kiln.timers = [];
  kiln.showError(null);
  const view = document.getElementById("view");
  const crumbs = document.getElementById("crumbs");
  const [, page, arg] = (location.hash || "#/").split("/");
  view.replaceChildren();
  try {
    if (page === "run") {
      crumbs.textContent = "/ run " + arg;
      await kiln.runView(view, Number(arg));
    } else if (page === "compare") {
      crumbs.textContent = "/ compare " + arg;
      await kiln.compareView(view, arg.split(",").map(Number));
    } else {
      crumbs.textContent = "/ runs";
      await kiln.runsView(view);
    }
  } catch (error) {
    kiln.showError(error);
  }
};

window.addEventListener("hashchange", kiln.route);
window.kilnPageLoads = (window.kilnPageLoads || 0) + 1;
kiln.route();
