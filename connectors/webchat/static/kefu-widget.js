/*
 * Kefu 客服 web chat widget. Embed with one tag:
 *   <script src="https://YOUR-GATEWAY/widget/kefu-widget.js" async data-kefu-title="在线客服"></script>
 * Optional: data-kefu-url (the gateway, default: where this script came from).
 * Frame protocol: connectors/webchat/protocol.py. All customer and server text is set with textContent.
 */
(function () {
  "use strict";
  if (window.KefuWidget) return;

  var script = document.currentScript || document.querySelector('script[src*="kefu-widget.js"]');
  var base = ((script && script.getAttribute("data-kefu-url")) || new URL(script.src, location.href).origin)
    .replace(/\/+$/, "");
  var title = (script && script.getAttribute("data-kefu-title")) || "星河移动在线客服";
  var API = base + "/api/v1/channels/webchat";
  var WS_URL = API.replace(/^http/, "ws") + "/ws";
  var KEY = "kefu-webchat:" + base;
  var MAX_CHARS = 2000;
  var FEEDBACK = { "/feedback_positive": "helpful", "/feedback_negative": "unhelpful" };

  var store = {
    get: function (name, fallback) {
      try { var v = localStorage.getItem(KEY + ":" + name); return v === null ? fallback : JSON.parse(v); }
      catch (e) { return fallback; }
    },
    set: function (name, value) {
      try { localStorage.setItem(KEY + ":" + name, JSON.stringify(value)); } catch (e) { /* private mode */ }
    }
  };

  var state = {
    token: store.get("token", null),
    lastSeen: 0,
    pending: store.get("pending", []), // [{id, text, shown}] sent but not acked: resent after reconnect
    seen: {},
    titles: {}, // payload -> button title, to show "有用" rather than "/feedback_positive" in history
    ws: null,
    attempts: 0,
    historyLoaded: false,
    mode: "connecting",
    polling: false,
    open: false
  };

  // ---- DOM -------------------------------------------------------------------------------------
  var host = document.createElement("div");
  host.id = "kefu-widget";
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = base + "/widget/kefu-widget.css";
  root.appendChild(css);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  var launcher = el("button", { "class": "kefu-launcher", "data-testid": "kefu-launcher", type: "button",
                                "aria-label": "打开在线客服" }, "在线客服");
  var panel = el("section", { "class": "kefu-panel", role: "dialog", "aria-label": title, hidden: "" });
  var header = el("header", { "class": "kefu-header" });
  header.appendChild(el("span", { "class": "kefu-title" }, title));
  var status = el("span", { "class": "kefu-status", "data-testid": "kefu-status", "data-state": "connecting" },
                  "连接中…");
  header.appendChild(status);
  var close = el("button", { "class": "kefu-close", type: "button", "aria-label": "关闭" }, "×");
  header.appendChild(close);
  var list = el("div", { "class": "kefu-list", "aria-live": "polite" });
  var typing = el("div", { "class": "kefu-typing", hidden: "" }, "客服正在输入…");
  var form = el("form", { "class": "kefu-compose" });
  var input = el("input", { "class": "kefu-input", "data-testid": "kefu-input", type: "text",
                            maxlength: String(MAX_CHARS), placeholder: "请输入您的问题", "aria-label": "消息" });
  var send = el("button", { "class": "kefu-send", "data-testid": "kefu-send", type: "submit" }, "发送");
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(list);
  panel.appendChild(typing);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launcher);

  function toggle(open) {
    state.open = open === undefined ? !state.open : open;
    launcher.classList.toggle("kefu-open", state.open);
    if (state.open) { panel.removeAttribute("hidden"); input.focus(); scroll(); }
    else panel.setAttribute("hidden", "");
  }
  launcher.addEventListener("click", function () { toggle(); });
  close.addEventListener("click", function () { toggle(false); });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) return;
    input.value = "";
    say(text, text);
  });

  function setStatus(mode) {
    state.mode = mode;
    status.setAttribute("data-state", mode);
    status.textContent = { connecting: "连接中…", open: "在线", reconnecting: "重新连接中…",
                           fallback: "网络较差，已切换到兼容模式" }[mode] || mode;
  }

  function scroll() { list.scrollTop = list.scrollHeight; }

  // ---- rendering -------------------------------------------------------------------------------
  function senderOf(item) { return item.sender || "bot"; }

  function render(item) {
    if (item.message_id && state.seen[item.message_id]) return null;
    if (item.message_id) {
      state.seen[item.message_id] = true;
      if (item.sender !== "customer" && item.message_id > state.lastSeen) state.lastSeen = item.message_id;
    }
    (item.options || []).forEach(function (o) { state.titles[o.payload] = o.title; });
    var box = el("div", { "class": "kefu-msg kefu-" + senderOf(item), "data-testid": "kefu-msg",
                          "data-sender": senderOf(item), "data-kind": item.kind || "info",
                          "data-message-id": item.message_id ? String(item.message_id) : "" });
    var shown = item.text;
    if (item.sender === "customer" && state.titles[item.text]) shown = state.titles[item.text];
    box.appendChild(el("div", { "class": "kefu-text", "data-testid": "kefu-msg-text" }, shown));
    if (item.kind === "answer") box.appendChild(feedbackButtons(item));
    var options = (item.options || []).filter(function (o) { return !FEEDBACK[o.payload]; });
    if (options.length) {
      var row = el("div", { "class": "kefu-options" });
      options.forEach(function (o) {
        var b = el("button", { type: "button", "class": "kefu-option", "data-testid": "kefu-option",
                               "data-payload": o.payload }, o.title);
        b.addEventListener("click", function () { say(o.payload, o.title); });
        row.appendChild(b);
      });
      box.appendChild(row);
    }
    if (item.url && /^https?:\/\//i.test(item.url)) {
      var link = el("a", { href: item.url, target: "_blank", rel: "noopener noreferrer", "class": "kefu-link" },
                    "查看详情");
      box.appendChild(link);
    }
    if (item.kind === "form") box.appendChild(callbackForm());
    if (item.kind === "ces") box.appendChild(cesButtons());
    list.appendChild(box);
    scroll();
    return box;
  }

  function feedbackButtons(item) {
    var row = el("div", { "class": "kefu-feedback" });
    var pairs = [["helpful", "有用", "/feedback_positive"], ["unhelpful", "没用", "/feedback_negative"]];
    pairs.forEach(function (p) {
      var found = (item.options || []).filter(function (o) { return FEEDBACK[o.payload] === p[0]; })[0];
      var b = el("button", { type: "button", "class": "kefu-fb", "data-testid": "kefu-" + p[0] },
                 found ? found.title : p[1]);
      b.addEventListener("click", function () {
        row.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
        b.classList.add("kefu-chosen");
        say(found ? found.payload : p[2], found ? found.title : p[1]);
      });
      row.appendChild(b);
    });
    return row;
  }

  function callbackForm() {
    var f = el("form", { "class": "kefu-callback", "data-testid": "kefu-callback-form" });
    var phone = el("input", { type: "tel", inputmode: "tel", maxlength: "20", placeholder: "手机号码",
                              "aria-label": "手机号码", name: "phone" });
    var ok = el("button", { type: "submit" }, "提交");
    f.appendChild(phone);
    f.appendChild(ok);
    f.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = phone.value.trim();
      if (!value) return;
      phone.disabled = ok.disabled = true;
      say(value, value);
    });
    return f;
  }

  function cesButtons() {
    var box = el("div", { "class": "kefu-ces", "data-testid": "kefu-ces" });
    var row = el("div", { "class": "kefu-ces-scores" });
    for (var score = 1; score <= 7; score++) {
      (function (s) {
        var b = el("button", { type: "button", "data-score": String(s) }, String(s));
        b.addEventListener("click", function () {
          row.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
          b.classList.add("kefu-chosen");
          rate(s);
        });
        row.appendChild(b);
      })(score);
    }
    box.appendChild(row);
    box.appendChild(el("div", { "class": "kefu-ces-legend" }, "1 很难 … 7 很容易"));
    return box;
  }

  function notice(text) {
    render({ sender: "system", kind: "info", text: text });
  }

  // ---- sending ---------------------------------------------------------------------------------
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "m" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  function say(text, shown) {
    if (text.length > MAX_CHARS) { notice("消息太长（最多 " + MAX_CHARS + " 字）"); return; }
    var message = { id: newId(), text: text, shown: shown };
    state.pending.push(message);
    store.set("pending", state.pending);
    showPending(message);
    transmit(message);
  }

  function showPending(message) {
    var box = render({ sender: "customer", kind: "text", text: message.shown });
    box.setAttribute("data-client-id", message.id);
    box.setAttribute("data-state", "sending");
  }

  function transmit(message) {
    if (state.ws && state.ws.readyState === 1 && state.mode === "open") {
      state.ws.send(JSON.stringify({ type: "message", id: message.id, text: message.text }));
    } else if (state.mode === "fallback") {
      postMessage(message);
    } // otherwise it stays pending and is sent on (re)connect
  }

  function acked(id) {
    state.pending = state.pending.filter(function (m) { return m.id !== id; });
    store.set("pending", state.pending);
    var box = list.querySelector('[data-client-id="' + CSS.escape(id) + '"]');
    if (box) box.setAttribute("data-state", "sent");
  }

  function failed(id, detail) {
    acked(id);
    var box = list.querySelector('[data-client-id="' + CSS.escape(id) + '"]');
    if (box) box.setAttribute("data-state", "failed");
    notice(detail || "消息发送失败");
  }

  function rate(score) {
    if (state.ws && state.ws.readyState === 1) {
      state.ws.send(JSON.stringify({ type: "ces", score: score }));
      return;
    }
    rest("POST", "/ces", { score: score }).then(function () { notice("感谢您的评价！"); })
      .catch(function () { notice("评价提交失败，请稍后重试"); });
  }

  // ---- WebSocket -------------------------------------------------------------------------------
  function connect() {
    var ws;
    try { ws = new WebSocket(WS_URL); } catch (e) { return retry(); }
    state.ws = ws;
    ws.onopen = function () {
      ws.send(JSON.stringify({ type: "hello", token: state.token, last_seen_id: state.lastSeen,
                               history: !state.historyLoaded }));
    };
    ws.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      onFrame(ws, frame);
    };
    ws.onclose = function (event) {
      if (state.ws !== ws) return;
      state.ws = null;
      if (event.code === 4401) { state.token = null; store.set("token", null); }
      retry();
    };
  }

  function onFrame(ws, frame) {
    switch (frame.type) {
      case "welcome":
        state.token = frame.token;
        store.set("token", frame.token);
        state.attempts = 0;
        stopPolling();
        setStatus("open");
        if (state.historyLoaded) state.pending.forEach(transmit);
        break;
      case "history":
        (frame.items || []).forEach(render);
        state.historyLoaded = true;
        // Messages typed before a reload and never acknowledged: show them again, then resend.
        state.pending.forEach(function (m) { showPending(m); });
        state.pending.forEach(transmit);
        break;
      case "message":
        if (frame.message) {
          render(frame.message);
          if (frame.message.message_id) ws.send(JSON.stringify({ type: "ack", message_id: frame.message.message_id }));
        }
        break;
      case "ack":
        acked(frame.id);
        break;
      case "typing":
        if (frame.on) typing.removeAttribute("hidden"); else typing.setAttribute("hidden", "");
        break;
      case "ces_recorded":
        notice("感谢您的评价！");
        break;
      case "error":
        if (frame.id && frame.code !== "server_error") failed(frame.id, frame.detail);
        else if (frame.code === "not_allowed") notice(frame.detail);
        break;
    }
  }

  function retry() {
    state.attempts += 1;
    typing.setAttribute("hidden", "");
    if (state.attempts >= 4 && state.mode !== "fallback") startPolling();
    if (state.mode !== "fallback") setStatus("reconnecting");
    var delay = Math.min(250 * Math.pow(2, state.attempts - 1), state.mode === "fallback" ? 15000 : 8000);
    setTimeout(connect, delay);
  }

  // ---- REST / long-poll fallback ---------------------------------------------------------------
  function rest(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state.token) headers["X-Kefu-Visitor"] = state.token;
    return fetch(API + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        if (!r.ok) return r.json().catch(function () { return {}; }).then(function (b) {
          var err = new Error(typeof b.detail === "string" ? b.detail : "HTTP " + r.status);
          err.status = r.status;
          throw err;
        });
        return r.json();
      });
  }

  function startPolling() {
    setStatus("fallback");
    if (state.polling) return;
    state.polling = true;
    var session = rest("POST", "/session", { token: state.token }).catch(function () {
      return rest("POST", "/session", { token: null });
    });
    session.then(function (s) {
      state.token = s.token;
      store.set("token", s.token);
      var first = state.historyLoaded ? Promise.resolve() : rest("GET", "/history").then(function (items) {
        items.forEach(render);
        state.historyLoaded = true;
        state.pending.forEach(function (m) { showPending(m); });
      });
      return first.then(function () { state.pending.forEach(postMessage); poll(); });
    }).catch(function () { state.polling = false; });
  }

  function stopPolling() { state.polling = false; }

  function poll() {
    if (!state.polling) return;
    rest("GET", "/messages?wait=true&after=" + state.lastSeen).then(function (items) {
      items.forEach(render);
      poll();
    }).catch(function () { setTimeout(poll, 3000); });
  }

  function postMessage(message) {
    rest("POST", "/messages", { id: message.id, text: message.text }).then(function (out) {
      acked(message.id);
      out.messages.forEach(render);
    }).catch(function (err) {
      if (err.status === 422) failed(message.id, err.message);
    });
  }

  window.KefuWidget = {
    open: function () { toggle(true); },
    close: function () { toggle(false); },
    // Test hook: drop the socket without a goodbye; the widget reconnects and replays by itself.
    dropConnection: function () { if (state.ws) state.ws.close(4000, "dropped"); },
    state: function () { return { mode: state.mode, lastSeen: state.lastSeen, pending: state.pending.length }; }
  };

  function start() {
    document.body.appendChild(host);
    connect();
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
