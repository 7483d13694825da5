// The admin knowledge console: entries (filter, edit, publish, versions, restore, audit), knowledge gaps and
// the retrieval test bench. Every call goes to /api/v1/admin, which enforces the admin role itself.
(function () {
  "use strict";
  var K = window.KefuConsole, api = K.api, el = K.el;
  var root = document.getElementById("root");
  var A = "/api/v1/admin/knowledge";

  K.start(root, "管理员登录", function (me) {
    if (me.role !== "admin") { root.replaceChildren(el("p", { "class": "error", "data-testid": "forbidden" }, "需要管理员权限")); return; }
    document.getElementById("who").textContent = me.display_name;
    document.getElementById("tab-entries").onclick = entries;
    document.getElementById("tab-gaps").onclick = gaps;
    document.getElementById("tab-bench").onclick = bench;
    document.getElementById("tab-synonyms").onclick = synonyms;
    entries();
  });

  async function entries() {
    root.replaceChildren();
    var layout = el("div", { "class": "layout" });
    layout.style.gridTemplateColumns = "24rem 1fr";
    var left = el("section", { "class": "panel" });
    var filter = el("input", { "data-testid": "entry-filter", placeholder: "搜索标题、答案、相似问…" });
    var status = el("select", {});
    [["", "全部状态"], ["published", "已发布"], ["draft", "草稿"], ["archived", "已归档"]].forEach(function (o) { status.append(el("option", { value: o[0] }, o[1])); });
    var list = el("div", { id: "entry-list" });
    left.append(filter, status, list);
    var right = el("section", { "class": "panel", id: "editor" });
    right.append(el("p", { "class": "muted" }, "选择一个条目"));
    layout.append(left, right);
    root.append(layout);
    async function load() {
      var qs = new URLSearchParams();
      if (filter.value.trim()) qs.set("q", filter.value.trim());
      if (status.value) qs.set("status", status.value);
      var rows = await api("GET", A + "/entries?" + qs.toString());
      list.replaceChildren();
      rows.forEach(function (e) {
        var row = el("div", { "class": "item", "data-testid": "entry-row", "data-kb-id": e.id });
        row.append(el("div", {}, e.id + " " + e.title), el("div", { "class": "muted" }, e.category + " · " + e.status + " · " + e.audience + " · v" + e.version));
        row.onclick = function () { edit(e.id); };
        list.append(row);
      });
    }
    filter.addEventListener("input", load);
    status.onchange = load;
    await load();
  }

  async function edit(id, notice) {
    var e = await api("GET", A + "/entries/" + encodeURIComponent(id));
    var pane = document.getElementById("editor");
    pane.replaceChildren();
    var title = el("input", { "data-testid": "entry-title" }); title.value = e.title;
    var similar = el("textarea", { "data-testid": "entry-similar", rows: "5" }); similar.value = e.similar.join("\n");
    var answer = el("textarea", { "data-testid": "entry-answer", rows: "5" }); answer.value = e.answer;
    var note = el("textarea", { "data-testid": "entry-note", rows: "3" }); note.value = e.agent_note;
    var audience = el("select", { "data-testid": "entry-audience" });
    [["all", "所有人"], ["agent_only", "仅坐席"]].forEach(function (o) { audience.append(el("option", { value: o[0] }, o[1])); });
    audience.value = e.audience;
    var msg = el("div", { "data-testid": "entry-message", "class": "muted" }, notice || "");
    var save = el("button", { "data-testid": "entry-save", "class": "primary" }, "保存");
    save.onclick = async function () {
      try {
        await api("PATCH", A + "/entries/" + encodeURIComponent(id), {
          title: title.value, answer: answer.value, agent_note: note.value, audience: audience.value,
          similar: similar.value.split("\n").map(function (s) { return s.trim(); }).filter(Boolean),
        });
        edit(id, "已保存（已生效于检索）");
      } catch (err) { msg.textContent = "保存失败：" + err.message; }
    };
    var publish = el("button", { "data-testid": "entry-publish" }, "发布");
    publish.onclick = async function () { await api("POST", A + "/entries/" + encodeURIComponent(id) + "/publish"); edit(id); };
    var archive = el("button", { "data-testid": "entry-archive" }, "归档");
    archive.onclick = async function () { await api("POST", A + "/entries/" + encodeURIComponent(id) + "/archive"); edit(id); };
    var row = el("div", { "class": "row" }); row.append(save, publish, archive, el("span", { "class": "muted" }, e.status + " · v" + e.version));
    var preview = el("div", { "class": "row" });
    var asCustomer = el("div", { "class": "kb" }); asCustomer.append(el("strong", {}, "客户看到"), el("div", {}, e.audience === "all" && e.status === "published" ? e.answer : "（客户看不到此条目）"));
    var asAgent = el("div", { "class": "kb" }); asAgent.append(el("strong", {}, "坐席看到"), el("div", {}, e.answer), el("div", { "class": "note" }, "备注：" + e.agent_note));
    preview.append(asCustomer, asAgent);
    var versions = el("table", {});
    versions.append(el("tr", {}, null));
    e.versions.slice().reverse().forEach(function (v) {
      var tr = el("tr", { "data-testid": "version-row", "data-version": String(v.version) });
      var diff = v.snapshot.answer !== e.answer ? "答案：" + v.snapshot.answer : "（与当前答案相同）";
      tr.append(el("td", {}, "v" + v.version), el("td", {}, v.created_by), el("td", { "class": "muted" }, diff));
      var restore = el("button", { "data-testid": "version-restore" }, "恢复");
      restore.onclick = async function () { await api("POST", A + "/entries/" + encodeURIComponent(id) + "/restore", { version: v.version }); edit(id); };
      var td = el("td", {}); td.append(restore); tr.append(td);
      versions.append(tr);
    });
    var audit = el("div", {});
    e.audit.slice().reverse().forEach(function (a) {
      audit.append(el("div", { "class": "muted", "data-testid": "audit-row" }, new Date(a.at).toLocaleString() + " " + a.actor + " " + a.action + " v" + a.version + " " + Object.keys(a.changes).join(", ")));
    });
    pane.append(el("h2", {}, e.id + " · " + e.category), el("label", {}, "标准问"), title, el("label", {}, "相似问（每行一个）"), similar,
      el("label", {}, "客户答案"), answer, el("label", {}, "坐席备注"), note, el("label", {}, "可见范围"), audience, row, msg,
      el("h2", {}, "预览"), preview, el("h2", {}, "版本历史"), versions, el("h2", {}, "审计日志"), audit);
  }

  async function gaps() {
    root.replaceChildren();
    var panel = el("section", { "class": "panel" });
    panel.style.margin = ".8rem";
    var data = await api("GET", A + "/gaps");
    panel.append(el("h2", {}, "知识缺口（未答出或被评“没用”的客户问题）"));
    panel.append(el("div", { "class": "muted" }, Object.keys(data.weeks).map(function (w) { return w + " 周：" + data.weeks[w]; }).join("　") || "最近没有缺口"));
    data.groups.forEach(function (g) {
      var card = el("div", { "class": "kb", "data-testid": "gap-group" });
      card.append(el("strong", {}, g.representative + "（" + g.count + "）"));
      g.questions.slice(0, 8).forEach(function (q) { card.append(el("div", { "class": "muted" }, ({ unhelpful: "没用 " + (q.kb_id || ""), unsure: "仅给出推荐", unanswered: "未答出" }[q.reason] || q.reason) + "：" + q.text)); });
      var target = el("input", { placeholder: "条目编号，如 KB0101", "data-testid": "gap-target" });
      target.style.width = "12rem";
      var add = el("button", { "data-testid": "gap-add-paraphrase" }, "加为相似问");
      add.onclick = async function () {
        var id = target.value.trim(); if (!id) return;
        var e = await api("GET", A + "/entries/" + encodeURIComponent(id));
        await api("PATCH", A + "/entries/" + encodeURIComponent(id), { similar: e.similar.concat([g.representative]) });
        add.textContent = "已添加";
      };
      var create = el("button", { "data-testid": "gap-create-entry" }, "据此新建条目");
      create.onclick = async function () {
        var id = prompt("新条目编号（如 KB9901）"); if (!id) return;
        await api("POST", A + "/entries", { external_id: id, category: "待整理", title: g.representative, answer: "（待补充答案）" });
        entries(); setTimeout(function () { edit(id); }, 300);
      };
      var row = el("div", { "class": "row" }); row.append(target, add, create);
      card.append(row);
      panel.append(card);
    });
    root.append(panel);
  }

  async function synonyms() {
    root.replaceChildren();
    var panel = el("section", { "class": "panel" });
    panel.style.margin = ".8rem";
    var data = await api("GET", "/api/v1/admin/synonyms");
    var box = el("textarea", { "data-testid": "synonyms-input", rows: "20" });
    box.value = data.pairs.map(function (p) { return p[0] + " => " + p[1]; }).join("\n");
    var msg = el("div", { "class": "muted", "data-testid": "synonyms-message" });
    var save = el("button", { "data-testid": "synonyms-save", "class": "primary" }, "保存并重建索引");
    save.onclick = async function () {
      var pairs = box.value.split("\n").map(function (l) { return l.split("=>").map(function (x) { return x.trim(); }); })
        .filter(function (p) { return p.length === 2 && p[0] && p[1]; });
      try { await api("PUT", "/api/v1/admin/synonyms", { pairs: pairs }); msg.textContent = "已保存，索引正在后台重建（几秒钟）"; }
      catch (err) { msg.textContent = "保存失败：" + err.message; }
    };
    panel.append(el("h2", {}, "同义词表（每行：说法 => 标准词）"), box, el("div", { "class": "row" }), save, msg);
    root.append(panel);
  }

  function bench() {
    root.replaceChildren();
    var panel = el("section", { "class": "panel" });
    panel.style.margin = ".8rem";
    var input = el("input", { "data-testid": "bench-input", placeholder: "输入一个客户问题" });
    var run = el("button", { "data-testid": "bench-run", "class": "primary" }, "检索");
    var out = el("div", { "data-testid": "bench-result" });
    run.onclick = async function () {
      out.replaceChildren();
      var results = await api("GET", A + "/test?q=" + encodeURIComponent(input.value));
      results.forEach(function (r) {
        var card = el("div", { "class": "kb" });
        card.append(el("strong", {}, (r.audience === "customer" ? "客户" : "坐席") + "：" + r.tier), el("div", { "class": "muted" }, "归一化：" + r.normalised_query));
        var table = el("table", {});
        r.hits.forEach(function (h) {
          var tr = el("tr", {});
          tr.append(el("td", {}, h.id), el("td", {}, h.title), el("td", {}, h.confidence.toFixed(3)),
            el("td", { "class": "muted" }, Object.keys(h.legs).map(function (k) { return k + "=" + h.legs[k].toFixed(2); }).join(" ")));
          table.append(tr);
        });
        card.append(table);
        out.append(card);
      });
    };
    input.addEventListener("keydown", function (e) { if (e.key === "Enter") run.onclick(); });
    var row = el("div", { "class": "row" }); row.append(input, run);
    panel.append(el("h2", {}, "检索测试台"), row, out);
    root.append(panel);
  }
})();
