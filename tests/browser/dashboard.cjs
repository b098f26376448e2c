// Drives Debian's chromium (headless, through playwright-core) for
// tests/tests/dashboard_browser.rs. The Rust test owns the scenario: it
// writes one JSON command per line on stdin and reads one JSON answer per
// line on stdout ({"ok": true, "value": ..., "ms": ...} or {"ok": false,
// "error": "..."}). Nothing is downloaded: the browser is /usr/bin/chromium
// (or HERD_CHROMIUM) and playwright-core comes from HERD_PLAYWRIGHT_CORE
// (.herd/tools/browser/node_modules/playwright-core, by
// scripts/install-test-tools).
//
// Commands:
//   {"cmd": "open", "url": "..."}                 load the page
//   {"cmd": "wait", "js": "<expr>", "timeout_ms": n} until the expression is truthy
//   {"cmd": "eval", "js": "<expr>"}               the expression's (JSON) value
//   {"cmd": "screenshot", "path": "..."}          full-page PNG
//   {"cmd": "viewport", "width": w, "height": h}  resize the page
//   {"cmd": "serve_status", "status": {...}}      answer the page's /api/status
//                                                 with this document from now on
//   {"cmd": "errors"}                             console errors and page errors so far
//   {"cmd": "quit"}
"use strict";

const readline = require("node:readline");

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Polls the expression from outside the page: page.waitForFunction would
// eval() inside it, which the page's Content-Security-Policy forbids.
async function waitFor(page, js, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await page.evaluate(js);
    if (last) return last;
    if (Date.now() > deadline) throw new Error("timed out after " + timeoutMs + " ms waiting for " + js);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function reply(v) {
  process.stdout.write(JSON.stringify(v) + "\n");
}

async function main() {
  const pwPath = process.env.HERD_PLAYWRIGHT_CORE;
  if (!pwPath) throw new Error("HERD_PLAYWRIGHT_CORE is not set");
  const { chromium } = require(pwPath);
  const browser = await chromium.launch({
    executablePath: process.env.HERD_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
  });
  let closing = false;
  browser.on("disconnected", () => {
    if (closing) return;
    reply({ ok: false, error: "chromium exited (browser disconnected)" });
    process.exit(1);
  });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const consoleErrors = [];
  const pageErrors = [];
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => pageErrors.push(String(e && e.message ? e.message : e)));

  reply({ ok: true, value: { browser: browser.version() } });

  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const started = Date.now();
    process.stderr.write(new Date().toISOString() + " " + line + "\n");
    let cmd;
    try {
      cmd = JSON.parse(line);
      let value = null;
      switch (cmd.cmd) {
        case "open":
          await page.goto(cmd.url, { waitUntil: "load", timeout: 30000 });
          break;
        case "wait":
          await waitFor(page, cmd.js, cmd.timeout_ms || 30000);
          break;
        case "eval":
          value = await page.evaluate(cmd.js);
          break;
        case "screenshot":
          await page.screenshot({ path: cmd.path, fullPage: true });
          break;
        case "viewport":
          await page.setViewportSize({ width: cmd.width, height: cmd.height });
          break;
        case "serve_status": {
          const body = JSON.stringify(cmd.status);
          await page.route("**/api/status", (route) =>
            route.fulfill({ status: 200, contentType: "application/json", body }),
          );
          break;
        }
        case "errors":
          value = { console: consoleErrors.slice(), page: pageErrors.slice() };
          break;
        case "quit":
          closing = true;
          await browser.close();
          reply({ ok: true, value: null, ms: Date.now() - started });
          // stdin may stay open: leave now rather than wait for its end.
          process.exit(0);
        default:
          throw new Error("unknown command " + JSON.stringify(cmd.cmd));
      }
      reply({ ok: true, value, ms: Date.now() - started });
    } catch (e) {
      let state = null;
      try {
        state = await page.evaluate(
          "JSON.stringify({ state: document.body.dataset.state, banner: document.getElementById('banner').textContent, rangers: document.getElementById('rangers').innerText })",
        );
      } catch (_) {
        // the page itself may be gone
      }
      reply({ ok: false, error: String(e && e.message ? e.message : e), page: state, ms: Date.now() - started });
    }
  }
  closing = true;
  await browser.close();
}

main().catch((e) => {
  reply({ ok: false, error: "driver failed: " + String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
