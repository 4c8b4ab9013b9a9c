// Narrow screens (<= 1024 px) start with the nav sidebar collapsed; Django opens it by default
// and its toggle still opens it. This runs before Django's nav_sidebar.js reads the stored
// state; a state this script collapsed is restored on the next wide page.
(function () {
  "use strict";
  var KEY = "django.admin.navSidebarIsOpen";
  var AUTO = "proxy.navSidebarAutoCollapsed";
  try {
    if (window.matchMedia("(max-width: 1024px)").matches) {
      if (window.localStorage.getItem(KEY) !== "false") {
        window.localStorage.setItem(KEY, "false");
        window.localStorage.setItem(AUTO, "1");
      }
    } else if (window.localStorage.getItem(AUTO) === "1") {
      window.localStorage.setItem(KEY, "true");
      window.localStorage.removeItem(AUTO);
    }
  } catch (e) {
    /* storage disabled: Django's default (open) applies */
  }
})();
