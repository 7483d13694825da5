// Shared by the agent and admin consoles: the login form and fetch with the session cookie + CSRF header.
(function () {
  "use strict";
  function csrf() {
    var m = document.cookie.match(/(?:^|; )kefu_csrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: {} };
    if (method !== "GET") init.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    var response = await fetch(path, init);
    var data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      var detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
      var error = new Error(detail); error.status = response.status; throw error;
    }
    return data;
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);  // never innerHTML: customer text
    return node;
  }
  function login(root, title, onReady) {
    root.replaceChildren();
    var form = el("form", { "class": "login" });
    form.append(el("h2", {}, title),
      el("input", { "data-testid": "login-username", "placeholder": "用户名", "autocomplete": "username" }),
      el("input", { "data-testid": "login-password", "placeholder": "密码", "type": "password", "autocomplete": "current-password" }),
      el("button", { "data-testid": "login-submit", "class": "primary", "type": "submit" }, "登录"),
      el("div", { "data-testid": "login-error", "class": "error" }));
    form.addEventListener("submit", async function (e) {
      e.preventDefault();
      var error = form.querySelector("[data-testid=login-error]");
      error.textContent = "";
      try {
        var session = await api("POST", "/api/v1/agent/session", {
          username: form.querySelector("[data-testid=login-username]").value,
          password: form.querySelector("[data-testid=login-password]").value,
        });
        onReady(session.agent);
      } catch (err) { error.textContent = err.message || "登录失败"; }
    });
    root.append(form);
  }
  async function start(root, title, onReady) {
    try { onReady(await api("GET", "/api/v1/agent/me")); }
    catch (err) { login(root, title, onReady); }
  }
  window.KefuConsole = { api: api, el: el, start: start, login: login };
})();
