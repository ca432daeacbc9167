/* Staff order board: sign in, take orders, move them along. */
"use strict";

(function () {
  const { api, el, clear, token, newIdempotencyKey } = window.Brigade;

  const NEXT = { pending: "preparing", preparing: "ready", ready: "served", served: "paid" };
  const CANCELLABLE = new Set(["pending", "preparing", "ready"]);
  const REFRESH_MS = 5000;

  let menuItems = [];
  let tableNames = new Map();
  let timer = null;
  let pendingKey = null;

  const $ = (id) => document.getElementById(id);
  const show = (node, visible) => node.classList.toggle("hidden", !visible);

  function signedOut(message) {
    token.clear();
    show($("login-card"), true);
    show($("board-card"), false);
    show($("logout"), false);
    $("whoami").textContent = "";
    $("login-error").textContent = message || "";
    if (timer) clearInterval(timer);
    timer = null;
  }

  async function handle(error) {
    if (error.status === 401) signedOut("Your session expired. Please sign in again.");
    else $("board-status").textContent = error.message;
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const result = await api("POST", "/api/v1/auth/token", {
        username: $("username").value, password: $("password").value,
      });
      token.set(result.access_token);
      $("password").value = "";
      await start();
    } catch (error) {
      $("login-error").textContent = error.status === 401 ? "Wrong username or password." : error.message;
    }
  }

  async function start() {
    const me = await api("GET", "/api/v1/users/me");
    $("whoami").textContent = `${me.username} (${me.role})`;
    show($("login-card"), false);
    show($("board-card"), true);
    show($("logout"), true);
    await loadOrderForm();
    await refresh();
    if (!timer) timer = setInterval(refresh, REFRESH_MS);
  }

  function tableLabel(tableId) {
    if (!tableId) return "takeaway";
    return tableNames.get(tableId) || `table #${tableId}`;
  }

  function orderCard(order) {
    const actions = el("div", { className: "actions" });
    if (NEXT[order.status]) {
      actions.append(el("button", {
        type: "button", onclick: () => move(order.id, NEXT[order.status]),
      }, `→ ${NEXT[order.status]}`));
    }
    if (CANCELLABLE.has(order.status)) {
      actions.append(el("button", {
        type: "button", className: "secondary", onclick: () => move(order.id, "cancelled"),
      }, "Cancel"));
    }
    return el("li", { className: "order" },
      el("div", { className: "order-head" },
        el("strong", {}, order.public_code),
        el("span", { className: "muted" }, tableLabel(order.table_id))),
      el("ul", { className: "plain" },
        order.lines.map((l) => el("li", {}, `${l.quantity} × ${l.item_name}`, l.note ? ` (${l.note})` : ""))),
      order.note ? el("p", { className: "muted" }, order.note) : null,
      el("div", { className: "order-foot" }, el("span", { className: "price" }, order.total), actions));
  }

  async function refresh() {
    try {
      const page = await api("GET", "/api/v1/orders?status=pending&status=preparing&status=ready&status=served&limit=200");
      for (const column of document.querySelectorAll("#board .column")) {
        const list = column.querySelector("ol");
        clear(list);
        const orders = page.items.filter((o) => o.status === column.dataset.status).reverse();
        orders.forEach((o) => list.append(orderCard(o)));
      }
      $("board-status").textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      await handle(error);
    }
  }

  async function move(orderId, status) {
    try {
      await api("POST", `/api/v1/orders/${orderId}/status`, { status });
      await refresh();
    } catch (error) {
      await handle(error);
    }
  }

  async function loadOrderForm() {
    const [menu, tables] = await Promise.all([
      api("GET", "/api/v1/menu"),
      api("GET", "/api/v1/tables"),
    ]);
    tableNames = new Map(tables.map((t) => [t.id, t.name]));
    const select = $("order-table");
    clear(select);
    select.append(el("option", { value: "" }, "Takeaway"));
    tables.filter((t) => t.is_active).forEach((t) =>
      select.append(el("option", { value: String(t.id) }, `${t.name} (${t.seats} seats)`)));
    menuItems = menu.categories.flatMap((c) => c.items).filter((i) => i.is_available);
    const picker = $("order-items");
    clear(picker);
    for (const item of menuItems) {
      picker.append(el("label", { className: "pick" },
        el("span", {}, `${item.name} `, el("span", { className: "price" }, item.price)),
        el("input", {
          type: "number", min: "0", max: "99", value: "0", dataset: { itemId: String(item.id) },
          oninput: updateTotal,
        })));
    }
    updateTotal();
  }

  function chosenLines() {
    return [...document.querySelectorAll("#order-items input")]
      .map((input) => ({ menu_item_id: Number(input.dataset.itemId), quantity: Number(input.value) }))
      .filter((line) => Number.isInteger(line.quantity) && line.quantity > 0);
  }

  function updateTotal() {
    // Display only; the server computes the authoritative total with exact decimals.
    let cents = 0;
    for (const line of chosenLines()) {
      const item = menuItems.find((i) => i.id === line.menu_item_id);
      if (item) cents += Math.round(Number(item.price) * 100) * line.quantity;
    }
    $("order-total").textContent = (cents / 100).toFixed(2);
    pendingKey = null; // the order changed: a new submission is a new request
  }

  async function placeOrder(event) {
    event.preventDefault();
    const message = (text, isError) => {
      $("order-error").textContent = text;
      $("order-error").className = isError ? "error" : "muted";
    };
    message("", false);
    const lines = chosenLines();
    if (!lines.length) {
      message("Pick at least one item.", true);
      return;
    }
    const tableValue = $("order-table").value;
    const body = { lines, note: $("order-note").value };
    if (tableValue) body.table_id = Number(tableValue);
    // Reuse the key if this exact submission is retried (e.g. after a network error).
    pendingKey = pendingKey || newIdempotencyKey();
    try {
      const order = await api("POST", "/api/v1/orders", body, { "Idempotency-Key": pendingKey });
      pendingKey = null;
      message(`Order ${order.public_code} placed.`, false);
      document.querySelectorAll("#order-items input").forEach((input) => { input.value = "0"; });
      $("order-note").value = "";
      updateTotal();
      await refresh();
    } catch (error) {
      message(error.message, true);
      if (error.status === 401) await handle(error);
    }
  }

  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => signedOut());
  $("refresh").addEventListener("click", refresh);
  $("new-order-toggle").addEventListener("click", () => $("new-order").classList.toggle("hidden"));
  $("new-order").addEventListener("submit", placeOrder);

  if (token.get()) start().catch(() => signedOut());
  else signedOut();
})();
