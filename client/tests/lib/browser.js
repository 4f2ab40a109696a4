// Headless Chromium for the tests: Debian's chromium driven by playwright-core
// (npm cannot download a browser here, so none is bundled).

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// Without the background-networking flags Chromium keeps dialling Google's
// hosts, which a closed network refuses; --no-sandbox because the tests may run as root.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches a headless Chromium with a fresh, temporary profile (Playwright makes and removes it). */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30_000 });
}

/**
 * A new page in its own context that records JavaScript errors and the API
 * requests it sends, so tests can assert "nothing was sent".
 */
export async function openPage(browser, url, { viewport = { width: 1100, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const errors = [];
  const apiRequests = [];
  page.on('pageerror', (error) => errors.push(error));
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) {
      apiRequests.push(`${request.method()} ${request.url()}`);
    }
  });
  await page.goto(url);
  return { page, context, errors, apiRequests };
}

/** Describes the element that has keyboard focus, looking inside shadow roots. */
export function focused(page) {
  return page.evaluate(() => {
    let element = document.activeElement;
    while (element?.shadowRoot?.activeElement) element = element.shadowRoot.activeElement;
    if (!element || element === document.body) return { tag: 'body', name: '' };
    const root = element.getRootNode();
    const label = element.id ? root.querySelector?.(`label[for="${element.id}"]`) : null;
    const name = (element.getAttribute('aria-label')
      || label?.childNodes[0]?.textContent
      || element.textContent
      || '').trim().replace(/\s+/g, ' ');
    return { tag: element.tagName.toLowerCase(), id: element.id, name, host: root.host?.tagName?.toLowerCase() ?? null };
  });
}
