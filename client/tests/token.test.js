// <book-form> against a service whose writes need a token (WRITE_TOKEN):
// without the token the save is refused and nothing is stored; with the
// `token` attribute set, the same save goes through.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { apiClient } from './lib/api.js';
import { launchBrowser, openPage } from './lib/browser.js';
import { startStack } from './lib/stack.js';

const TOKEN = 'client-test-token-5d2e';

describe('book-form with a write token', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let api;

  before(async () => {
    stack = await startStack('token', { env: { WRITE_TOKEN: TOKEN } });
    api = apiClient(stack.baseUrl);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const demo = () => `${stack.baseUrl}/components/demo/book-form.html`;
  const field = (page, name) => page.locator('book-form').getByRole('textbox', { name, exact: true });

  it('refuses to save without the token and saves with it', async () => {
    const { page, context, errors } = await openPage(browser, demo());
    // Which API requests carried the token: the writes only.
    const sent = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname.startsWith('/api/')) {
        sent.push(`${request.method()} ${request.headers().authorization ?? 'no token'}`);
      }
    });
    try {
      await field(page, 'ID').fill('201');
      await field(page, 'Title').fill('Secured');
      await field(page, 'Author').fill('Ann Author');
      await page.getByRole('button', { name: 'Save book' }).click();
      const alert = page.locator('book-form [role="alert"]', { hasText: 'write token' });
      await alert.waitFor();
      assert.match(await alert.textContent(), /needs its write token.*not saved/);
      assert.equal((await api.get(201)).status, 404, 'nothing was stored without the token');

      await page.locator('book-form').evaluate((form, token) => form.setAttribute('token', token), TOKEN);
      await page.getByRole('button', { name: 'Save book' }).click();
      await page.locator('book-form [role="status"]', { hasText: 'Added “Secured”.' }).waitFor();
      const stored = await api.get(201);
      assert.equal(stored.status, 200);
      assert.deepEqual(stored.body, { _id: 201, title: 'Secured', author: 'Ann Author', description: '' });
      // Each save first looks the id up (GET, no token), then writes (PUT).
      assert.deepEqual(sent, ['GET no token', 'PUT no token', 'GET no token', `PUT Bearer ${TOKEN}`]);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
