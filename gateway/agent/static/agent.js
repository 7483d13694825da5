// The agent console: queue, live conversation, knowledge (agent view) and callbacks. Polls the agent API,
// which is correct across gateway replicas; every customer text is rendered with textContent.
(function () {
  "use strict";
  var K = window.KefuConsole, api = K.api, el = K.el;
  var root = document.getElementById("root");
  var state = { me: null, open: null, lastId: 0, timer: null };

  K.start(root, "坐席登录", ready);

  function ready(me) {
    state.me = me;
    document.getElementById("who").textContent = me.display_name;
    var presence = document.getElementById("presence");
    presence.value = me.presence;
    presence.onchange = function () { api("PUT", "/api/v1/agent/presence", { presence: presence.value }); };
    root.replaceChildren();
    var layout = el("div", { "class": "layout" });
    var left = el("section", { "class": "panel" });
    left.append(el("h2", {}, "待接入"), el("div", { id: "queue" }), el("h2", {}, "我的会话"), el("div", { id: "mine" }),
      el("h2", {}, "回电队列"), el("div", { id: "callbacks" }));
    var middle = el("section", { "class": "panel", id: "conversation" });
    middle.append(el("p", { "class": "muted" }, "从左侧选择一个会话"));
    var right = el("section", { "class": "panel" });
    var search = el("input", { "data-testid": "kb-search-input", placeholder: "搜索知识库（含坐席备注）" });
    search.addEventListener("keydown", function (e) { if (e.key === "Enter") searchKb(search.value); });
    right.append(el("h2", {}, "知识库"), search, el("div", { id: "kb" }), el("h2", {}, "推荐答案"), el("div", { id: "assist" }));
    layout.append(left, middle, right);
    root.append(layout);
    if (me.presence === "offline") { presence.value = "online"; presence.onchange(); }
    refresh();
    state.timer = setInterval(refresh, 1500);
  }

  async function refresh() {
    try {
      var waiting = await api("GET", "/api/v1/agent/conversations?view=waiting");
      var mine = await api("GET", "/api/v1/agent/conversations?view=mine");
      list("queue", waiting, true);
      list("mine", mine, false);
      callbacks(await api("GET", "/api/v1/agent/callbacks"));
      if (state.open) await poll();
    } catch (err) { if (err.status === 401) location.reload(); }
  }

  function list(id, rows, waiting) {
    var box = document.getElementById(id);
    box.replaceChildren();
    if (!rows.length) box.append(el("p", { "class": "muted" }, "暂无"));
    rows.forEach(function (c) {
      var item = el("div", { "class": "item" + (c.priority === "high" ? " high" : "") + (state.open === c.id ? " active" : ""),
        "data-testid": waiting ? "queue-item" : "mine-item", "data-conversation-id": c.id });
      item.append(el("div", {}, (c.channel || "") + " · " + (c.handoff_reason || "")),
        el("div", { "class": "muted" }, c.waiting_since ? "等待自 " + new Date(c.waiting_since).toLocaleTimeString() : c.status));
      item.onclick = function () { openConversation(c.id); };
      box.append(item);
    });
  }

  function callbacks(rows) {
    var box = document.getElementById("callbacks");
    box.replaceChildren();
    if (!rows.length) box.append(el("p", { "class": "muted" }, "暂无"));
    rows.forEach(function (cb) {
      var item = el("div", { "class": "item", "data-testid": "callback-item" });
      item.append(el("div", {}, cb.phone + " · " + new Date(cb.slot_start).toLocaleString()), el("div", { "class": "muted" }, cb.status));
      [["called", "已回电"], ["no_answer", "未接通"], ["done", "完成"]].forEach(function (p) {
        var b = el("button", { "data-testid": "callback-" + p[0] }, p[1]);
        b.onclick = function (e) { e.stopPropagation(); api("POST", "/api/v1/agent/callbacks/" + cb.id, { status: p[0] }).then(refresh); };
        item.append(b);
      });
      box.append(item);
    });
  }

  async function openConversation(id) {
    state.open = id; state.lastId = 0;
    var detail = await api("GET", "/api/v1/agent/conversations/" + encodeURIComponent(id));
    var pane = document.getElementById("conversation");
    pane.replaceChildren();
    var actions = el("div", { "class": "row" });
    var claim = el("button", { "data-testid": "claim", "class": "primary" }, "接入");
    claim.disabled = detail.status !== "pending_human";
    claim.onclick = async function () { await api("POST", "/api/v1/agent/conversations/" + id + "/claim"); openConversation(id); };
    var resolve = el("button", { "data-testid": "resolve" }, "结束会话");
    resolve.disabled = detail.status !== "human";
    resolve.onclick = async function () { await api("POST", "/api/v1/agent/conversations/" + id + "/resolve"); openConversation(id); };
    var transfer = el("select", { "data-testid": "transfer" });
    transfer.append(el("option", { value: "" }, "转给…"));
    (await api("GET", "/api/v1/agent/agents")).forEach(function (a) {
      if (a.id !== state.me.id) transfer.append(el("option", { value: String(a.id) }, a.display_name + "（" + a.presence + "）"));
    });
    transfer.disabled = detail.status !== "human";
    transfer.onchange = async function () {
      if (!transfer.value) return;
      await api("POST", "/api/v1/agent/conversations/" + id + "/transfer", { agent_id: Number(transfer.value) });
      state.open = null; pane.replaceChildren(el("p", { "class": "muted" }, "已转接"));
    };
    actions.append(claim, resolve, transfer, el("span", { "class": "muted" }, detail.status + " · " + detail.tier));
    var messages = el("div", { "class": "msgs", id: "messages" });
    var history = el("details", {});
    history.append(el("summary", {}, "客户历史（全部渠道，" + detail.history.length + " 条）"));
    detail.history.forEach(function (m) { history.append(el("div", { "class": "muted" }, m.channel + " · " + m.sender_type + "：" + m.text)); });
    var input = el("textarea", { "data-testid": "agent-reply-input", rows: "3", placeholder: "回复客户…" });
    var send = el("button", { "data-testid": "agent-reply-send", "class": "primary" }, "发送");
    var note = el("button", { "data-testid": "agent-note-send" }, "内部备注");
    send.onclick = function () { reply(input, false); };
    note.onclick = function () { reply(input, true); };
    input.addEventListener("keydown", function (e) { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) reply(input, false); });
    var row = el("div", { "class": "row" });
    row.append(send, note);
    pane.append(actions, history, messages, input, row);
    detail.transcript.forEach(addMessage);
    assist();
  }

  function addMessage(m) {
    if (m.id <= state.lastId) return;
    state.lastId = m.id;
    var sender = m.sender_type;
    var node = el("div", { "class": "msg" + (m.private ? " private" : ""), "data-testid": "agent-msg", "data-sender": sender,
      "data-message-id": String(m.id) }, (m.private ? "［备注］" : "") + m.text);
    document.getElementById("messages").append(node);
    node.scrollIntoView({ block: "nearest" });
  }

  async function poll() {
    var box = document.getElementById("messages");
    if (!box) return;
    var rows = await api("GET", "/api/v1/agent/conversations/" + state.open + "/messages?after=" + state.lastId);
    var fromCustomer = rows.some(function (m) { return m.direction === "in"; });
    rows.forEach(addMessage);
    if (fromCustomer) assist();
  }

  async function reply(input, isPrivate) {
    var text = input.value.trim();
    if (!text || !state.open) return;
    try {
      addMessage(await api("POST", "/api/v1/agent/conversations/" + state.open + "/messages", { text: text, private: isPrivate }));
      input.value = "";
    } catch (err) { alert(err.message); }
  }

  async function searchKb(q) {
    if (!q.trim()) return;
    render("kb", await api("GET", "/api/v1/agent/knowledge/search?q=" + encodeURIComponent(q)), "kb-result");
  }

  async function assist() {
    if (!state.open) return;
    render("assist", await api("GET", "/api/v1/agent/conversations/" + state.open + "/assist"), "assist-item");
  }

  function render(id, hits, testid) {
    var box = document.getElementById(id);
    box.replaceChildren();
    if (!hits.length) box.append(el("p", { "class": "muted" }, "无结果"));
    hits.forEach(function (h) {
      var card = el("div", { "class": "kb", "data-testid": testid, "data-kb-id": h.id });
      card.append(el("strong", {}, h.id + " " + h.title + (h.audience === "agent_only" ? "（仅坐席）" : "")),
        el("div", {}, h.answer));
      if (h.agent_note) card.append(el("div", { "class": "note" }, "备注：" + h.agent_note));
      var insert = el("button", { "data-testid": "kb-insert" }, "插入回复");
      insert.onclick = function () { var box = document.querySelector("[data-testid=agent-reply-input]"); if (box) box.value = h.answer; };
      var save = el("button", { "data-testid": "kb-save-paraphrase" }, "客户问法存为相似问");
      save.onclick = async function () {
        var last = Array.prototype.filter.call(document.querySelectorAll("[data-testid=agent-msg][data-sender=customer]"), function () { return true; }).pop();
        if (last) { await api("POST", "/api/v1/agent/knowledge/" + h.id + "/paraphrases", { text: last.textContent }); save.textContent = "已保存"; }
      };
      card.append(el("div", { "class": "row" }), insert, save);
      box.append(card);
    });
  }
})();
