// What the reader sees when the database goes away under the running
// service: the service answers 503, and the components say so in plain words.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { apiClient } from './lib/api.js';
import { focused, launchBrowser, openPage } from './lib/browser.js';
import { ARTIFACTS_DIR, startStack } from './lib/stack.js';
import { eventually } from './lib/wait.js';

describe('when the database is down', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let api;

  before(async () => {
    stack = await startStack('errors');
    api = apiClient(stack.baseUrl);
    await api.put({ _id: 1, title: 'Survivor', author: 'Ann Author', description: 'Still here.' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('saving, deleting and listing report the outage in plain words', async () => {
    const { page, context, errors } = await openPage(browser, `${stack.baseUrl}/`);
    try {
      await page.getByRole('button', { name: /^Survivor/ }).click();
      await page.getByRole('heading', { name: 'Edit book 1' }).waitFor();

      await stack.stopDatabase();
      // Bounded: the service notices on its next request to the database.
      await eventually(async () => {
        const response = await fetch(`${stack.baseUrl}/ready`, { signal: AbortSignal.timeout(5_000) });
        assert.equal(response.status, 503);
      }, { timeout: 30_000, interval: 500, what: 'GET /ready to answer 503' });

      const alert = page.locator('book-form [role="alert"]');
      await page.getByLabel('Title').fill('Survivor, revised');
      await page.getByRole('button', { name: 'Save changes' }).click();
      await alert.filter({ hasText: 'The books database is not available right now. The book was not saved.' })
        .waitFor({ timeout: 30_000 });
      assert.equal((await focused(page)).host, 'book-form', 'focus moves to the message');
      assert.doesNotMatch(await alert.textContent(), /something.*went wrong/i);
      // What was typed is kept, so nothing is lost once the database is back.
      assert.equal(await page.getByLabel('Title').inputValue(), 'Survivor, revised');

      await page.getByRole('button', { name: 'Delete…' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
      await alert.filter({ hasText: 'The book was not deleted.' }).waitFor({ timeout: 30_000 });

      await page.evaluate(() => document.querySelector('books-list').refresh());
      // Waited for, not read at once: the list renders its alert after the
      // failed request settles, which may be after refresh() returns.
      const listAlert = page.locator('books-list [role="alert"]');
      await listAlert.filter({ hasText: 'Could not load the books. The books database is not available right now.' })
        .waitFor({ timeout: 30_000 });
      await page.getByRole('button', { name: 'Try again' }).waitFor({ state: 'visible', timeout: 30_000 });
      // The books already shown stay on screen.
      assert.equal(await page.getByRole('button', { name: /^Survivor/ }).count(), 1);

      await page.screenshot({ path: path.join(ARTIFACTS_DIR, 'demo-page-database-down.png'), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
