// jit-access web page: the only script, served from /ui/static (the CSP allows no other).
// Countdowns for active grants, the action list following the chosen resource, copy buttons.
"use strict";

function formatLeft(ms) {
  if (ms <= 0) return "ending";
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (h > 0 ? h + "h" + two(m) + "m" : m + "m") + two(s) + "s left";
}

function tick() {
  const now = Date.now();
  document.querySelectorAll("[data-expires]").forEach((el) => {
    const left = Date.parse(el.dataset.expires) - now;
    el.textContent = formatLeft(left);
    el.classList.toggle("ending", left < 60000);
  });
}

function followResource() {
  const resource = document.getElementById("resource");
  const action = document.getElementById("action");
  if (!resource || !action) return;
  const sync = () => {
    let firstShown = null;
    for (const option of action.options) {
      const shown = option.dataset.resource === resource.value;
      option.hidden = !shown;
      option.disabled = !shown;
      if (shown && firstShown === null) firstShown = option;
    }
    const chosen = action.selectedOptions[0];
    if ((!chosen || chosen.disabled) && firstShown) firstShown.selected = true;
  };
  resource.addEventListener("change", sync);
  sync();
}

function copyButtons() {
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (e) {
        field.select();  // no clipboard access (http, or refused): select it for Ctrl-C
      }
      button.textContent = "Copied";
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  if (document.querySelector("[data-expires]")) setInterval(tick, 1000);
  followResource();
  copyButtons();
});
