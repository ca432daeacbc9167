// The scenario's stand-in for the front end's hashed script: same-origin
// fetch of the public menu, no inline code (the CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", async () => {
  const list = document.getElementById("menu");
  try {
    const answer = await fetch("/api/v1/menu", { headers: { Accept: "application/json" } });
    const menu = await answer.json();
    const item = document.createElement("li");
    item.textContent = `served by backend ${menu.backend}`;
    list.appendChild(item);
  } catch (error) {
    list.textContent = `menu unavailable: ${error}`;
  }
});
