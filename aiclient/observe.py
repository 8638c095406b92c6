"""What operators look at: /metrics (Prometheus), /status (a live page), /status.json.

The page is plain HTML and JavaScript served from here, with no build step; it polls
/status.json, which needs the client key like every other route (the page takes it from
its own `?key=` or asks for it once). Nothing here shows a credential.
"""

from __future__ import annotations

import os
import time

import orjson

from . import __version__
from .http_server import App, Request, Response
from .metrics import CONTENT_TYPE, instance_status
from .pool.models import iso_now
from .runtime import RUNTIME

__all__ = ["add_routes"]


async def metrics(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    peers = await runtime.share.peers() if runtime.share is not None else []
    body = runtime.metrics.render(peers)
    return Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def status_json(request: Request) -> Response:
    runtime = request.app[RUNTIME]
    writer = runtime.writer
    data = {
        "version": __version__,
        "pid": os.getpid(),
        "timestamp": iso_now(),
        "uptimeSeconds": round(time.time() - runtime.started, 1),
        "mode": runtime.setup.mode,
        "defaultProvider": runtime.default_provider(),
        "poolFile": None
        if runtime.setup.pool_file is None
        else {
            "path": str(runtime.setup.pool_file.path),
            "writeBack": "paused" if writer is not None and writer.paused else "active",
            "error": writer.error if writer is not None else None,
        },
        "pools": instance_status(runtime.metrics),
    }
    return Response(body=orjson.dumps(data), content_type="application/json")


async def status_page(request: Request) -> Response:
    return Response(text=_PAGE, content_type="text/html")


def add_routes(app: App) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status_page)
    app.router.add_get("/status.json", status_json)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>aiclient status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
  .meta { color: #666; }
  table { border-collapse: collapse; min-width: 60%; }
  th, td { text-align: left; padding: .3em .8em; border-bottom: 1px solid #ddd; }
  th { background: #f4f4f4; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state { padding: .1em .5em; border-radius: .8em; font-size: .9em; }
  .healthy { background: #d9f5dd; color: #145c22; }
  .unhealthy { background: #fbdada; color: #8a1616; }
  .disabled { background: #e6e6e6; color: #555; }
  #error { color: #8a1616; }
  #paused { background: #fff3cd; padding: .5em; display: none; }
</style>
</head>
<body>
<h1>aiclient status</h1>
<div class="meta" id="meta">loading&hellip;</div>
<div id="paused"></div>
<div id="error"></div>
<form id="login" style="display:none">
  <label>API key <input type="password" id="key" autocomplete="off"></label>
  <button>Show</button>
</form>
<div id="pools"></div>
<script>
"use strict";
const params = new URLSearchParams(location.search);
let key = params.get("key") || sessionStorage.getItem("aiclient-key") || "";
const $ = (id) => document.getElementById(id);
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "\\u2013" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function render(data) {
  $("meta").textContent = "version " + data.version + " \\u00b7 pid " + data.pid +
    " \\u00b7 up " + Math.round(data.uptimeSeconds) + " s \\u00b7 default provider " +
    (data.defaultProvider || "none") + " \\u00b7 updated " + data.timestamp;
  const paused = data.poolFile && data.poolFile.writeBack === "paused";
  $("paused").style.display = paused ? "block" : "none";
  $("paused").textContent = paused ?
    "Pool file write-back paused: " + data.poolFile.error : "";
  const root = $("pools");
  root.textContent = "";
  for (const [ptype, instances] of Object.entries(data.pools)) {
    const h = document.createElement("h2");
    h.textContent = ptype + " (" + instances.length + ")";
    root.appendChild(h);
    const table = document.createElement("table");
    table.dataset.providerType = ptype;
    const head = table.insertRow();
    for (const title of ["instance", "state", "usage", "errors", "in flight",
                         "latency ms", "last used", "last error"]) {
      const th = document.createElement("th");
      th.textContent = title;
      head.appendChild(th);
    }
    for (const inst of instances) {
      const row = table.insertRow();
      row.dataset.uuid = inst.uuid;
      cell(row, inst.customName ? inst.customName + " (" + inst.uuid + ")" : inst.uuid);
      const state = cell(row, "");
      const badge = document.createElement("span");
      badge.className = "state " + inst.state;
      badge.textContent = inst.status === "active" ? inst.state :
        inst.status + (inst.reason ? " (" + inst.reason + ")" : "") +
        (inst.cooldownUntil ? " until " + inst.cooldownUntil : "");
      state.appendChild(badge);
      cell(row, inst.usageCount, "num");
      cell(row, inst.errorCount, "num");
      cell(row, inst.inFlight, "num");
      cell(row, inst.latencyMs, "num");
      cell(row, inst.lastUsed);
      cell(row, inst.lastErrorTime);
    }
    root.appendChild(table);
  }
}
async function refresh() {
  try {
    const resp = await fetch("status.json", {headers: {"Authorization": "Bearer " + key}});
    if (resp.status === 401) {
      $("login").style.display = "block";
      $("error").textContent = key ? "The key was not accepted." : "";
      return;
    }
    $("login").style.display = "none";
    $("error").textContent = "";
    render(await resp.json());
  } catch (err) {
    $("error").textContent = "Cannot reach the server: " + err;
  }
}
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  key = $("key").value;
  sessionStorage.setItem("aiclient-key", key);
  refresh();
});
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
