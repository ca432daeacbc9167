/* Public page: the menu and order status look-up. */
"use strict";

(function () {
  const { api, el, clear } = window.Brigade;

  const STATUS_TEXT = {
    pending: "Received — waiting for the kitchen",
    preparing: "Being prepared",
    ready: "Ready",
    served: "Served — enjoy!",
    paid: "Paid — thank you",
    cancelled: "Cancelled",
  };

  async function loadMenu() {
    const status = document.getElementById("menu-status");
    const container = document.getElementById("menu");
    try {
      const menu = await api("GET", "/api/v1/menu");
      clear(container);
      if (!menu.categories.length) {
        status.textContent = "The menu is empty for now.";
        return;
      }
      status.textContent = "";
      for (const category of menu.categories) {
        const list = el("ul", { className: "menu-list" });
        for (const item of category.items) {
          list.append(
            el("li", { className: item.is_available ? "menu-item" : "menu-item unavailable" },
              el("div", { className: "menu-item-head" },
                el("span", { className: "menu-item-name" }, item.name),
                el("span", { className: "price" }, item.price)),
              item.description ? el("p", { className: "muted" }, item.description) : null,
              item.is_available ? null : el("span", { className: "badge" }, "Sold out"))
          );
        }
        container.append(el("section", { className: "menu-category" },
          el("h3", {}, category.name), list));
      }
    } catch (error) {
      status.textContent = "The menu could not be loaded. Please try again shortly.";
    }
  }

  async function lookup(event) {
    event.preventDefault();
    const input = document.getElementById("lookup-code");
    const result = document.getElementById("lookup-result");
    const code = input.value.trim().toUpperCase();
    clear(result);
    try {
      const order = await api("GET", `/api/v1/orders/lookup/${encodeURIComponent(code)}`);
      result.append(
        el("p", {}, "Order ", el("strong", {}, order.code), ": ",
          el("span", { className: `status status-${order.status}` },
            STATUS_TEXT[order.status] || order.status)),
        el("ul", { className: "plain" },
          order.lines.map((line) => el("li", {}, `${line.quantity} × ${line.item_name}`))),
        el("p", { className: "muted" }, `Total ${order.total}`)
      );
    } catch (error) {
      const text = error.status === 404 ? "No order with that code." :
        error.status === 422 ? "That does not look like an order code." :
          "Could not look up the order right now.";
      result.append(el("p", { className: "error" }, text));
    }
  }

  document.getElementById("lookup-form").addEventListener("submit", lookup);
  loadMenu();
})();
