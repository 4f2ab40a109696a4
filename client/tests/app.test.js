// The demo app on "/": the list and the form together, used with the mouse
// and with the keyboard alone, and a screenshot of it for people to look at.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { apiClient } from './lib/api.js';
import { focused, launchBrowser, openPage } from './lib/browser.js';
import { ARTIFACTS_DIR, startStack } from './lib/stack.js';
import { eventually } from './lib/wait.js';

const SEEDED = [
  { _id: 1, title: 'Continuous Deployment', author: 'John Doe', description: 'Ship every change.' },
  { _id: 2, title: 'Docker in Practice', author: 'John Doe', description: 'Containers, day to day.' },
  { _id: 3, title: 'The DevOps 2.0 Toolkit', author: 'John Doe', description: 'Microservices and the tools around them.' },
];

/** Presses Tab (at most `max` times) until the focused element matches. */
async function tabTo(page, matches, { max = 25, key = 'Tab' } = {}) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press(key);
    const now = await focused(page);
    if (matches(now)) return now;
  }
  throw new Error(`${key} never reached the element; last focus: ${JSON.stringify(await focused(page))}`);
}

describe('the books app at /', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let api;

  before(async () => {
    stack = await startStack('app');
    api = apiClient(stack.baseUrl);
    for (const book of SEEDED) await api.put(book);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const titles = (page) => page.locator('books-list .book .title').allTextContents();

  it('creates, edits and deletes books with the list and the form together', async () => {
    const { page, context, errors } = await openPage(browser, `${stack.baseUrl}/`);
    try {
      await eventually(async () => assert.deepEqual(await titles(page), SEEDED.map((b) => b.title)),
        { what: 'the seeded books' });

      // Open a book from the list: the form shows it.
      await page.getByRole('button', { name: /^Docker in Practice/ }).click();
      await page.getByRole('heading', { name: 'Edit book 2' }).waitFor();
      assert.equal(await page.getByLabel('Description').inputValue(), 'Containers, day to day.');
      assert.deepEqual(await focused(page), { tag: 'input', id: 'title', name: 'Title', host: 'book-form' });

      // Edit it: the list follows.
      await page.getByLabel('Title').fill('Docker in Practice, 2nd edition');
      await page.getByRole('button', { name: 'Save changes' }).click();
      await eventually(async () => assert.equal((await titles(page))[1], 'Docker in Practice, 2nd edition'),
        { what: 'the list to show the new title' });
      assert.equal((await api.get(2)).body.title, 'Docker in Practice, 2nd edition');

      // Create one: it appears in the list, selected.
      await page.getByRole('button', { name: 'New book' }).click();
      await page.getByRole('heading', { name: 'New book' }).waitFor();
      await page.getByLabel('ID').fill('10');
      await page.getByLabel('Title').fill('Site Reliability Engineering');
      await page.getByLabel('Author').fill('Betsy Beyer');
      await page.getByRole('button', { name: 'Save book' }).click();
      const created = page.getByRole('button', { name: /^Site Reliability Engineering/ });
      await created.waitFor();
      assert.equal(await created.getAttribute('aria-current'), 'true');
      assert.deepEqual((await api.get(10)).body,
        { _id: 10, title: 'Site Reliability Engineering', author: 'Betsy Beyer', description: '' });

      // Delete it: it leaves the list and the database.
      await page.getByRole('button', { name: 'Delete…' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Delete', exact: true }).click();
      await created.waitFor({ state: 'detached' });
      assert.equal((await api.get(10)).status, 404);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('can be used with the keyboard alone', async () => {
    const { page, context, errors } = await openPage(browser, `${stack.baseUrl}/`);
    try {
      await page.locator('books-list .book').first().waitFor();
      const key = (name) => page.keyboard.press(name);

      // "New book" is reachable with Tab and puts focus in the form's first field.
      await tabTo(page, (f) => f.name === 'New book');
      await key('Enter');
      assert.deepEqual(await focused(page), { tag: 'input', id: 'id', name: 'ID', host: 'book-form' });
      await page.keyboard.type('20');
      await key('Tab');
      await page.keyboard.type('Typed Without a Mouse');
      await key('Tab');
      await page.keyboard.type('Kay Board');
      await key('Tab');
      await page.keyboard.type('Entered with keys only.');
      await key('Tab');
      assert.equal((await focused(page)).name, 'Save book');
      await key('Enter');
      await page.getByRole('status').filter({ hasText: 'Added “Typed Without a Mouse”.' }).waitFor();
      assert.equal((await api.get(20)).body.author, 'Kay Board');

      // Back to the list with Shift+Tab, to the new book with the arrow keys, open it with Enter.
      await page.locator('books-list .book', { hasText: 'Typed Without a Mouse' }).waitFor();
      await tabTo(page, (f) => f.host === 'books-list' && f.name !== 'New book', { key: 'Shift+Tab' });
      await key('End');
      assert.match((await focused(page)).name, /^Typed Without a Mouse/);
      await key('Enter');
      // The form already shows book 20 (just saved); wait for the reload that opening starts.
      await page.getByRole('status').filter({ hasText: 'Editing “Typed Without a Mouse”.' }).waitFor();
      await eventually(async () => assert.deepEqual(await focused(page),
        { tag: 'input', id: 'title', name: 'Title', host: 'book-form' }), { what: 'focus on the title field' });

      // Change the title and save with Enter from the field.
      await key('Control+A');
      await page.keyboard.type('Typed Twice');
      await key('Enter');
      await page.getByRole('status').filter({ hasText: 'Saved your changes to “Typed Twice”.' }).waitFor();
      assert.equal((await api.get(20)).body.title, 'Typed Twice');

      // Delete: Escape backs out of the confirmation, then confirm it for real.
      await tabTo(page, (f) => f.name === 'Delete…');
      await key('Enter');
      assert.equal((await focused(page)).name, 'Keep it', 'the safe choice has focus');
      await key('Escape');
      await page.getByRole('dialog').waitFor({ state: 'hidden' });
      assert.equal((await focused(page)).name, 'Delete…', 'focus returns to where it was');
      assert.equal((await api.get(20)).status, 200);

      await key('Enter');
      await key('Tab');
      assert.equal((await focused(page)).name, 'Delete');
      await key('Enter');
      await page.getByRole('status').filter({ hasText: 'Deleted “Typed Twice”.' }).waitFor();
      assert.equal((await api.get(20)).status, 404);
      // The Delete button is gone; focus is on the form's heading, not lost to the page.
      assert.deepEqual(await focused(page), { tag: 'h2', id: 'heading', name: 'New book', host: 'book-form' });
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('looks right: a screenshot of the demo page is saved', async () => {
    const { page, context } = await openPage(browser, `${stack.baseUrl}/`);
    try {
      await page.getByRole('button', { name: /^The DevOps 2.0 Toolkit/ }).click();
      await page.getByRole('heading', { name: 'Edit book 3' }).waitFor();
      const file = path.join(ARTIFACTS_DIR, 'demo-page.png');
      await page.screenshot({ path: file, fullPage: true });

      // The two parts sit side by side on a desktop-sized window.
      const list = await page.locator('books-list').boundingBox();
      const form = await page.locator('book-form').boundingBox();
      assert.ok(list.x + list.width <= form.x, 'list left of form');
      assert.ok(list.width > 250 && form.width > 300);
    } finally {
      await context.close();
    }
  });
});
