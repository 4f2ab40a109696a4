// What a user of the first command sees: the books page at URL, loaded in a
// real (headless) browser, lists the books that the API at URL serves.
// Usage: node client/tests/check-live.mjs URL   (exit 0 when it does; the
// page's screenshot in client/tests/artifacts/live.png either way).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { launchBrowser, openPage } from './lib/browser.js';
import { ARTIFACTS_DIR } from './lib/stack.js';

const url = process.argv[2];
if (!url) {
  console.error('usage: node check-live.mjs URL (a books-ms base URL)');
  process.exit(2);
}
const fail = (message) => {
  console.error(`check-live: ${url}: ${message}`);
  process.exitCode = 1;
};

const response = await fetch(`${url}/api/v1/books?limit=5`, { signal: AbortSignal.timeout(10_000) }).catch((error) => {
  fail(`GET /api/v1/books?limit=5 failed: ${error.cause?.message ?? error.message}`);
  return null;
});
if (!response) {
  // Said above.
} else if (!response.ok) {
  fail(`GET /api/v1/books?limit=5 answered ${response.status}`);
} else {
  const books = await response.json();
  const browser = await launchBrowser();
  try {
    const { page, errors } = await openPage(browser, `${url}/`);
    const want = books.map((book) => book.title);
    let shown = [];
    try {
      // Locators look inside the components' shadow roots.
      await page.locator('books-list .book .title').first().waitFor({ timeout: 10_000 });
      shown = await page.locator('books-list .book .title').allTextContents();
    } catch (error) {
      fail(`the page shows no book: ${error.message.split('\n')[0]}`);
    }
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'live.png'), fullPage: true });
    const missing = want.filter((title) => !shown.includes(title));
    if (want.length === 0) fail('the API lists no book; the page has nothing to show');
    else if (missing.length > 0) fail(`the page does not show ${JSON.stringify(missing)} (it shows ${JSON.stringify(shown)})`);
    if (errors.length > 0) fail(`the page raised ${errors.map(String).join('; ')}`);
    if (!process.exitCode) console.error(`check-live: ${url}/ shows ${shown.length} books, as the API lists them`);
  } finally {
    await browser.close();
  }
}
