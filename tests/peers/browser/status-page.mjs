// tests/peers/browser/status-page.mjs: opens the exporter's status page in Debian's chromium
// (headless, driven by playwright-core) for tests/it/status_page.rs, takes a screenshot, and prints
// what the browser saw as one JSON line. It asserts nothing itself: the Rust test does.
//
// Usage: node status-page.mjs URL SCREENSHOT.png [CHROMIUM [PROVIDER]]
// With PROVIDER, after the screenshot it clicks that provider's name and reports where it
// landed and what that page says.
// Prints: STATUS_PAGE_RESULT {"title", "pwned", "scripts", "images", "requests", "header",
//          "rows": [{"provider", "class", "cells": [...], "detail", "link",
//                    "strip": [{"mark", "class", "title"}], "ratio"}],
//          "columns", "dialogs", "errors", "clicked": {"url", "text"} or null}
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, screenshot, executablePath = '/usr/bin/chromium', click] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node status-page.mjs URL SCREENSHOT.png [CHROMIUM]');
  process.exit(2);
}
// The test is loopback-only; refuse anything else rather than let chromium reach out.
const host = new URL(url).hostname;
if (host !== '127.0.0.1' && host !== '[::1]' && host !== 'localhost') {
  console.error(`refusing a non-loopback URL: ${url}`);
  process.exit(2);
}

// A fresh profile each run, so nothing cached from an earlier run can make the page look right.
const profile = mkdtempSync(join(tmpdir(), 'oauth2-exporter-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    // Without the background-networking flags chromium tries to reach update and sync hosts
    // the test machine cannot (and must not) reach.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1600, height: 400 },
    timeout: 30_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const requests = [];
  const dialogs = [];
  const errors = [];
  page.on('request', (request) => requests.push(`${request.method()} ${request.url()}`));
  // An alert() or a script error would mean something in the page ran.
  page.on('dialog', async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on('pageerror', (error) => errors.push(String(error)));

  const response = await page.goto(url, { waitUntil: 'load', timeout: 20_000 });
  const seen = await page.evaluate(() => ({
    title: document.title,
    pwned: typeof window.__pwned === 'undefined' ? null : String(window.__pwned),
    scripts: document.querySelectorAll('script').length,
    images: document.querySelectorAll('img').length,
    header: document.querySelector('header')?.innerText ?? null,
    rows: [...document.querySelectorAll('#providers tbody tr')].map((tr) => ({
      provider: tr.getAttribute('data-provider'),
      class: tr.getAttribute('class'),
      cells: [...tr.querySelectorAll(':scope > td')].map((td) => td.innerText.trim()),
      detail: tr.querySelector('.detail')?.textContent ?? null,
      link: tr.querySelector(':scope > td a')?.getAttribute('href') ?? null,
      strip: [...tr.querySelectorAll('.strip i')].map((cell) => ({
        mark: cell.textContent,
        class: cell.getAttribute('class'),
        title: cell.getAttribute('title'),
      })),
      ratio: tr.querySelector('.ratio')?.innerText ?? null,
    })),
    columns: [...document.querySelectorAll('#providers thead th')].map((th) => th.innerText.trim()),
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  // A person's click on the name, as a real navigation (no script of the page's own runs).
  let clicked = null;
  if (click) {
    const link = page.locator(`#providers tbody tr[data-provider="${click}"] > td a`);
    await Promise.all([page.waitForNavigation({ timeout: 20_000 }), link.click()]);
    clicked = { url: page.url(), text: await page.evaluate(() => document.body.innerText) };
  }
  console.log(
    'STATUS_PAGE_RESULT ' +
      JSON.stringify({
        status: response?.status() ?? null,
        ...seen,
        requests,
        dialogs,
        errors,
        clicked,
      }),
  );
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}
