// <book-form> on its demo page, against the real service and database:
// every change is checked through the API afterwards.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { apiClient } from './lib/api.js';
import { focused, launchBrowser, openPage } from './lib/browser.js';
import { freePort, startStack } from './lib/stack.js';

describe('book-form', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let api;

  before(async () => {
    stack = await startStack('form');
    api = apiClient(stack.baseUrl);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const demo = (query = '') => `${stack.baseUrl}/components/demo/book-form.html${query}`;
  const status = (page, text) => page.locator('book-form [role="status"]', { hasText: text }).waitFor();
  // Inside the form only: the demo page has an "Open the book with ID" field of its own.
  const field = (page, name) => page.locator('book-form').getByRole('textbox', { name, exact: true });
  const alertText = (page) => page.locator('book-form [role="alert"]').textContent();

  it('creates a book that is then stored by the API', async () => {
    const { page, context, errors } = await openPage(browser, demo());
    try {
      await field(page, 'ID').fill('101');
      await field(page, 'Title').fill('Release It!');
      await field(page, 'Author').fill('Michael T. Nygard');
      await field(page, 'Description').fill('Design and deploy production-ready software.');
      await page.getByRole('button', { name: 'Save book' }).click();
      await status(page, 'Added “Release It!”.');

      const stored = await api.get(101);
      assert.equal(stored.status, 200);
      assert.deepEqual(stored.body, {
        _id: 101, title: 'Release It!', author: 'Michael T. Nygard',
        description: 'Design and deploy production-ready software.',
      });
      await page.locator('#log li', { hasText: 'book-saved { created: true' }).waitFor();
      // Now it is the book being edited: its id is fixed and it can be deleted.
      assert.equal(await page.getByRole('heading', { name: 'Edit book 101' }).count(), 1);
      assert.equal(await field(page, 'ID').getAttribute('readonly'), '');
      assert.equal(await page.getByRole('button', { name: 'Delete…' }).isVisible(), true);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('edits a book and the change reaches the database', async () => {
    await api.put({ _id: 102, title: 'Old Title', author: 'Ann Author', description: 'Kept as it is.' });
    const { page, context, errors } = await openPage(browser, demo('?id=102'));
    try {
      await status(page, 'Editing “Old Title”.');
      assert.equal(await field(page, 'Author').inputValue(), 'Ann Author');
      await field(page, 'Title').fill('New Title');
      await page.getByRole('button', { name: 'Save changes' }).click();
      await status(page, 'Saved your changes to “New Title”.');

      const stored = await api.get(102);
      assert.deepEqual(stored.body, { _id: 102, title: 'New Title', author: 'Ann Author', description: 'Kept as it is.' });
      await page.locator('#log li', { hasText: 'book-saved { created: false' }).waitFor();
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('deletes a book only after confirmation', async () => {
    await api.put({ _id: 103, title: 'Doomed', author: 'Ann Author', description: '' });
    const { page, context, errors } = await openPage(browser, demo('?id=103'));
    try {
      await status(page, 'Editing “Doomed”.');
      const dialog = page.getByRole('dialog', { name: 'Delete this book?' });

      await page.getByRole('button', { name: 'Delete…' }).click();
      await dialog.waitFor();
      assert.match(await dialog.textContent(), /“Doomed” by Ann Author \(ID 103\) will be removed/);
      await dialog.getByRole('button', { name: 'Keep it' }).click();
      await dialog.waitFor({ state: 'hidden' });
      assert.equal((await api.get(103)).status, 200, 'keeping it must not delete it');

      await page.getByRole('button', { name: 'Delete…' }).click();
      await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
      await status(page, 'Deleted “Doomed”.');
      assert.equal((await api.get(103)).status, 404);
      await page.locator('#log li', { hasText: 'book-deleted' }).waitFor();
      assert.equal(await page.getByRole('heading', { name: 'New book' }).count(), 1);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('blocks bad input before anything is sent', async () => {
    const { page, context, errors, apiRequests } = await openPage(browser, demo());
    try {
      const save = page.getByRole('button', { name: 'Save book' });
      await save.click();
      assert.match(await alertText(page), /not saved.*3 fields/);
      for (const [label, message] of [['ID', 'Enter an ID.'], ['Title', 'Enter a title.'], ['Author', 'Enter an author.']]) {
        const input = field(page, label);
        assert.equal(await input.getAttribute('aria-invalid'), 'true', label);
        // The message is the field's accessible description, so it is read with the field.
        const description = await input.evaluate((el) => el.getAttribute('aria-describedby')
          .split(' ').map((id) => el.getRootNode().getElementById(id).textContent).join(' '));
        assert.match(description, new RegExp(message), label);
      }
      assert.deepEqual(await focused(page), { tag: 'input', id: 'id', name: 'ID', host: 'book-form' });

      await field(page, 'Title').fill('A Title');
      await field(page, 'Author').fill('An Author');
      for (const id of ['abc', '1.5', '12e3', '2147483648', '-2147483649', ' ']) {
        await field(page, 'ID').fill(id);
        await save.click();
        assert.equal(await field(page, 'ID').getAttribute('aria-invalid'), 'true', `id ${JSON.stringify(id)}`);
        assert.equal(await field(page, 'Title').getAttribute('aria-invalid'), null);
      }
      await field(page, 'ID').fill('7');
      await field(page, 'Title').fill('   ');
      await save.click();
      assert.equal(await field(page, 'Title').getAttribute('aria-invalid'), 'true');

      assert.deepEqual(apiRequests, [], 'invalid input must not reach the API');
      assert.equal((await api.get(7)).status, 404);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('refuses to overwrite an existing book when creating one', async () => {
    await api.put({ _id: 104, title: 'Already Here', author: 'First Owner', description: '' });
    const { page, context, apiRequests } = await openPage(browser, demo());
    try {
      await field(page, 'ID').fill('104');
      await field(page, 'Title').fill('Impostor');
      await field(page, 'Author').fill('Second Owner');
      await page.getByRole('button', { name: 'Save book' }).click();
      await page.locator('book-form #id-error', { hasText: 'There is already a book with ID 104 (“Already Here”)' }).waitFor();
      assert.equal((await api.get(104)).body.title, 'Already Here');
      assert.equal(apiRequests.filter((r) => r.startsWith('PUT ')).length, 0);
    } finally {
      await context.close();
    }
  });

  it('reports a book the service rejects (too large) in plain words', async () => {
    // The service takes bodies up to 256 KiB; nothing in the form limits the description.
    const { page, context, apiRequests } = await openPage(browser, demo());
    try {
      await field(page, 'ID').fill('107');
      await field(page, 'Title').fill('War and Peace, Unabridged');
      await field(page, 'Author').fill('Leo Tolstoy');
      await field(page, 'Description').fill('Well. '.repeat(60_000));
      await page.getByRole('button', { name: 'Save book' }).click();
      await page.locator('book-form [role="alert"]', { hasText: 'This book is too large for the books service' }).waitFor();
      assert.equal(apiRequests.filter((r) => r.startsWith('PUT ')).length, 1, 'the request did go out');
      assert.equal((await api.get(107)).status, 404);
      // The form keeps what was typed.
      assert.equal(await field(page, 'Title').inputValue(), 'War and Peace, Unabridged');
    } finally {
      await context.close();
    }
  });

  it('says plainly when the book to open does not exist', async () => {
    const { page, context } = await openPage(browser, demo('?id=999999'));
    try {
      await page.locator('book-form [role="alert"]', { hasText: 'There is no book with ID 999999' }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('says plainly when the service cannot be reached', async () => {
    const closed = await freePort(); // nothing listens there
    const { page, context } = await openPage(browser, demo(`?api=http://127.0.0.1:${closed}`));
    try {
      await field(page, 'ID').fill('105');
      await field(page, 'Title').fill('Offline');
      await field(page, 'Author').fill('Nobody');
      await page.getByRole('button', { name: 'Save book' }).click();
      await page.locator('book-form [role="alert"]', { hasText: 'Could not reach the books service' }).waitFor();
      // Focus goes to the message so a keyboard or screen-reader user meets it.
      assert.equal((await focused(page)).host, 'book-form');
      assert.equal((await api.get(105)).status, 404);
    } finally {
      await context.close();
    }
  });

  it('works from a page on another origin through CORS', async () => {
    // localhost and 127.0.0.1 are different origins to the browser.
    const pageOrigin = stack.baseUrl.replace('127.0.0.1', 'localhost');
    const url = `${pageOrigin}/components/demo/book-form.html?api=${encodeURIComponent(stack.baseUrl)}`;
    const { page, context, errors } = await openPage(browser, url);
    try {
      await field(page, 'ID').fill('106');
      await field(page, 'Title').fill('Across Origins');
      await field(page, 'Author').fill('Cora Corsley');
      await page.getByRole('button', { name: 'Save book' }).click();
      await status(page, 'Added “Across Origins”.');
      assert.equal((await api.get(106)).body.title, 'Across Origins');

      await page.getByRole('button', { name: 'Delete…' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
      await status(page, 'Deleted “Across Origins”.');
      assert.equal((await api.get(106)).status, 404);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
