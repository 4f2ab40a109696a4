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

/** The titles of the first books the API lists, or null (said why). */
async function listedTitles() {
  const what = 'GET /api/v1/books?limit=5';
  try {
    const response = await fetch(`${url}/api/v1/books?limit=5`, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) return fail(`${what} answered ${response.status}`), null;
    const books = await response.json();
    if (!Array.isArray(books)) return fail(`${what} is not a JSON array`), null;
    if (books.length === 0) return fail('the API lists no book; the page has nothing to show'), null;
    return books.map((book) => book.title);
  } catch (error) {
    return fail(`${what} failed: ${error.cause?.message ?? error.message}`), null;
  }
}

/** Loads the page and checks that it shows `want`; a screenshot either way. */
async function checkPage(want) {
  const browser = await launchBrowser();
  try {
    const { page, errors } = await openPage(browser, `${url}/`);
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
    if (missing.length > 0) fail(`the page does not show ${JSON.stringify(missing)} (it shows ${JSON.stringify(shown)})`);
    if (errors.length > 0) fail(`the page raised ${errors.map(String).join('; ')}`);
    if (!process.exitCode) console.error(`check-live: ${url}/ shows ${shown.length} books, as the API lists them`);
  } finally {
    await browser.close();
  }
}

const want = await listedTitles();
if (want) {
  await checkPage(want).catch((error) => fail(`the page could not be checked: ${error.message.split('\n')[0]}`));
}
