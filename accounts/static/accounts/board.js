// The accounts board re-reads itself every data-refresh-seconds while the tab is visible and
// nothing is selected: cells are swapped in place (Django's action handlers stay bound); if
// the rows changed order or number, the page reloads instead.
(function () {
  "use strict";
  var stamp = document.getElementById("board-refreshed");
  if (!stamp) return;
  var seconds = parseInt(stamp.dataset.refreshSeconds || "15", 10);

  function busy() {
    if (document.visibilityState !== "visible") return true;
    if (document.querySelector("#result_list input.action-select:checked")) return true;
    var action = document.querySelector("#changelist-form select[name=action]");
    return !!(action && action.value);
  }

  function rowKeys(root) {
    return Array.from(root.querySelectorAll("#result_list tbody tr")).map(function (tr) {
      var box = tr.querySelector("input.action-select");
      return box ? box.value : "";
    });
  }

  function swap(fresh) {
    var now = document.querySelector("#result_list tbody");
    var next = fresh.querySelector("#result_list tbody");
    if (!now || !next) return false;
    if (rowKeys(document).join(",") !== rowKeys(fresh).join(",")) return false;
    var oldRows = now.rows, newRows = next.rows;
    for (var r = 0; r < oldRows.length; r++) {
      for (var c = 0; c < oldRows[r].cells.length; c++) {
        if (oldRows[r].cells[c].querySelector("input.action-select")) continue;
        oldRows[r].cells[c].innerHTML = newRows[r].cells[c].innerHTML;
      }
    }
    return true;
  }

  function tick() {
    if (busy()) return;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.text() : Promise.reject(resp.status); })
      .then(function (html) {
        if (busy()) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        if (!swap(fresh)) { window.location.reload(); return; }
        stamp.textContent = "updated " + new Date().toLocaleTimeString();
        stamp.dataset.refreshes = String(parseInt(stamp.dataset.refreshes || "0", 10) + 1);
      })
      .catch(function () { stamp.textContent = "refresh failed; retrying"; });
  }

  window.setInterval(tick, seconds * 1000);
})();
