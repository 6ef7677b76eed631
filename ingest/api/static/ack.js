// The acknowledge-link page works without script; this only shows its UTC times in the
// phone's own time zone.
"use strict";

for (const time of document.querySelectorAll("time[datetime]")) {
  const at = new Date(time.getAttribute("datetime"));
  if (!Number.isNaN(at.getTime())) time.textContent = at.toLocaleString();
}
