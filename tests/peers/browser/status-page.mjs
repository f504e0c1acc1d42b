// tests/peers/browser/status-page.mjs: opens the exporter's status page in Debian's chromium
// (headless, driven by playwright-core) for tests/it/status_page.rs, takes a screenshot, and prints
// what the browser saw as one JSON line. It asserts nothing itself: the Rust test does.
//
// Usage: node status-page.mjs URL SCREENSHOT.png [CHROMIUM [CLICK [VISIT...]]]
// With CLICK, after the screenshot it clicks a link as a person would and reports where it landed
// and what that page says: CLICK is a provider's name (its name link) or PROVIDER/NAME=VALUE
// (that row's label link reading NAME=VALUE); `-` clicks nothing. Each VISIT URL is then opened
// in turn and read like the first page.
// Prints: STATUS_PAGE_RESULT {"title", "pwned", "scripts", "images", "requests", "header",
//          "rows": [{"provider", "class", "cells": [...], "detail", "link",
//                    "labels": [{"text", "href"}] or null (no .labels element),
//                    "strip": [{"mark", "class", "title"}], "ratio"}],
//          "filter": {"text", "links": [{"text", "href"}]} or null,
//          "columns", "dialogs", "errors",
//          "clicked": {"url", "text", "page": {"title", "rows", "filter", ...}} or null,
//          "visited": [{"url", "status", "title", "rows", "filter", ...}]}
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, screenshot, executablePath = '/usr/bin/chromium', clickArg = '-', ...visits] =
  process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node status-page.mjs URL SCREENSHOT.png [CHROMIUM [CLICK [VISIT...]]]');
  process.exit(2);
}
const click = clickArg === '-' ? null : clickArg;
// The test is loopback-only; refuse anything else rather than let chromium reach out.
for (const each of [url, ...visits]) {
  const host = new URL(each).hostname;
  if (host !== '127.0.0.1' && host !== '[::1]' && host !== 'localhost') {
    console.error(`refusing a non-loopback URL: ${each}`);
    process.exit(2);
  }
}

// What a page shows, read in the page (no script of the page's own runs: it has none).
const read = (page) =>
  page.evaluate(() => {
    const links = (root) =>
      [...root.querySelectorAll('a')].map((a) => ({
        text: a.textContent,
        href: a.getAttribute('href'),
      }));
    const filter = document.querySelector('p.filter');
    return {
      title: document.title,
      pwned: typeof window.__pwned === 'undefined' ? null : String(window.__pwned),
      scripts: document.querySelectorAll('script').length,
      images: document.querySelectorAll('img').length,
      header: document.querySelector('header')?.innerText ?? null,
      rows: [...document.querySelectorAll('#providers tbody tr')].map((tr) => {
        const labels = tr.querySelector('.labels');
        return {
          provider: tr.getAttribute('data-provider'),
          class: tr.getAttribute('class'),
          cells: [...tr.querySelectorAll(':scope > td')].map((td) => td.innerText.trim()),
          detail: tr.querySelector('.detail')?.textContent ?? null,
          link: tr.querySelector(':scope > td a')?.getAttribute('href') ?? null,
          labels: labels ? links(labels) : null,
          strip: [...tr.querySelectorAll('.strip i')].map((cell) => ({
            mark: cell.textContent,
            class: cell.getAttribute('class'),
            title: cell.getAttribute('title'),
          })),
          ratio: tr.querySelector('.ratio')?.innerText ?? null,
        };
      }),
      filter: filter ? { text: filter.innerText, links: links(filter) } : null,
      columns: [...document.querySelectorAll('#providers thead th')].map((th) =>
        th.innerText.trim(),
      ),
    };
  });

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
  const seen = await read(page);
  await page.screenshot({ path: screenshot, fullPage: true });
  // A person's click on a name or a label, as a real navigation (no script of the page's own
  // runs).
  let clicked = null;
  if (click) {
    const [provider, label] = click.split('/', 2);
    const row = page.locator(`#providers tbody tr[data-provider="${provider}"]`);
    const link = label
      ? row.locator('.labels').getByRole('link', { name: label, exact: true })
      : row.locator('td:first-child > a');
    await Promise.all([page.waitForNavigation({ timeout: 20_000 }), link.click()]);
    clicked = {
      url: page.url(),
      text: await page.evaluate(() => document.body.innerText),
      page: await read(page),
    };
  }
  const visited = [];
  for (const each of visits) {
    const answer = await page.goto(each, { waitUntil: 'load', timeout: 20_000 });
    visited.push({ url: page.url(), status: answer?.status() ?? null, ...(await read(page)) });
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
        visited,
      }),
  );
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}
