// Usher console: progressive enhancement only. Every flow works without this
// file (the server asks to confirm public grants itself); it adds live hints.
(function () {
  "use strict";

  // Warn as soon as a public principal is typed into New principals.
  var members = document.getElementById("members");
  var publicHint = document.getElementById("public-hint");
  if (members && publicHint) {
    var checkPublic = function () {
      var isPublic = members.value.split(/[\s,]+/).some(function (m) {
        return m === "allUsers" || m === "allAuthenticatedUsers";
      });
      publicHint.hidden = !isPublic;
    };
    members.addEventListener("input", checkPublic);
    checkPublic();
    if (!members.value) {
      members.focus();
    }
  }

  // Describe the chosen role under Select a role.
  var role = document.getElementById("role");
  var roleHint = document.getElementById("role-hint");
  if (role && roleHint) {
    var fallback = roleHint.textContent;
    var describe = function () {
      var opt = role.options[role.selectedIndex];
      roleHint.textContent = (opt && opt.dataset.description) || fallback;
    };
    role.addEventListener("change", describe);
    describe();
  }

  // Escape closes the Grant Access panel.
  var cancel = document.getElementById("sheet-cancel");
  if (cancel) {
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") {
        window.location.assign(cancel.href);
      }
    });
  }
})();
