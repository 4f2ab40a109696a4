// <books-list> on its demo page, against the real service and database.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { apiClient } from './lib/api.js';
import { focused, launchBrowser, openPage } from './lib/browser.js';
import { startStack } from './lib/stack.js';
import { eventually } from './lib/wait.js';

const SEEDED = [
  { _id: 1, title: 'Continuous Deployment', author: 'John Doe', description: 'The pipeline.' },
  { _id: 2, title: 'Docker in Practice', author: 'John Doe', description: 'Containers.' },
  { _id: 3, title: 'The DevOps 2.0 Toolkit', author: 'John Doe', description: 'Everything else.' },
];

describe('books-list', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let api;

  before(async () => {
    stack = await startStack('list');
    api = apiClient(stack.baseUrl);
    for (const book of SEEDED) await api.put(book);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  const demo = () => `${stack.baseUrl}/components/demo/books-list.html`;
  const titles = (page) => page.locator('books-list .book .title').allTextContents();

  it('shows the titles of the seeded books in id order', async () => {
    const { page, context, errors } = await openPage(browser, demo());
    try {
      await page.getByRole('status').filter({ hasText: '3 books.' }).waitFor();
      assert.deepEqual(await titles(page), SEEDED.map((b) => b.title));
      assert.equal(await page.locator('books-list .book .author').first().textContent(), 'by John Doe');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('opens a book with a book-open event carrying its id, and offers "New book"', async () => {
    const { page, context, errors } = await openPage(browser, demo());
    try {
      await page.getByRole('button', { name: /^Docker in Practice/ }).click();
      await page.locator('#log li', { hasText: 'book-open { id: 2 }' }).waitFor();
      assert.equal(
        await page.getByRole('button', { name: /^Docker in Practice/ }).getAttribute('aria-current'), 'true');

      await page.getByRole('button', { name: 'New book' }).click();
      await page.locator('#log li', { hasText: 'book-new' }).waitFor();
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('moves between books with the arrow keys and opens one with Enter', async () => {
    const { page, context } = await openPage(browser, demo());
    try {
      await page.getByRole('status').filter({ hasText: '3 books.' }).waitFor();
      await page.getByRole('button', { name: 'New book' }).focus();
      await page.keyboard.press('Tab');
      assert.match((await focused(page)).name, /^Continuous Deployment/);
      await page.keyboard.press('ArrowDown');
      assert.match((await focused(page)).name, /^Docker in Practice/);
      await page.keyboard.press('End');
      assert.match((await focused(page)).name, /^The DevOps 2.0 Toolkit/);
      await page.keyboard.press('Home');
      assert.match((await focused(page)).name, /^Continuous Deployment/);
      await page.keyboard.press('ArrowDown');
      await page.keyboard.press('Enter');
      await page.locator('#log li', { hasText: 'book-open { id: 2 }' }).waitFor();
      // One Tab stop for the whole list: Tab leaves it rather than walking every book.
      await page.keyboard.press('Tab');
      const next = await focused(page);
      assert.notEqual(next.host, 'books-list', `Tab stayed in the list on ${JSON.stringify(next)}`);
    } finally {
      await context.close();
    }
  });

  it('loads a long list page by page with the API paging parameters', async () => {
    // 250 more books after the three seeded ones; the demo page asks for 50 at a time.
    for (let i = 0; i < 250; i += 1) {
      await api.put({ _id: 1000 + i, title: `Volume ${1000 + i}`, author: 'Paging Author' });
    }
    const { page, context, errors, apiRequests } = await openPage(browser, demo());
    try {
      await page.getByRole('status').filter({ hasText: 'Showing the first 50 books' }).waitFor();
      assert.equal(await page.locator('books-list .book').count(), 50);

      const more = page.getByRole('button', { name: 'Show more books' });
      for (let round = 0; round < 10 && await more.isVisible(); round += 1) {
        const before = await page.locator('books-list .book').count();
        await more.click();
        await eventually(async () => assert.ok(await page.locator('books-list .book').count() > before),
          { what: 'the next page' });
        // Focus moves to the first book that was added, so keyboard users carry on from there.
        const firstNew = (await titles(page))[before];
        assert.equal((await focused(page)).name.startsWith(firstNew), true);
      }
      assert.equal(await page.locator('books-list .book').count(), 253);
      assert.equal((await titles(page)).at(-1), 'Volume 1249');
      await page.getByRole('status').filter({ hasText: '253 books.' }).waitFor();

      // Every request was a bounded page, each continuing after the last id shown.
      const lists = apiRequests.filter((r) => r.startsWith('GET ') && new URL(r.slice(4)).pathname === '/api/v1/books');
      assert.equal(lists.length, 6);
      for (const request of lists) assert.equal(new URL(request.slice(4)).searchParams.get('limit'), '51');
      assert.equal(new URL(lists[1].slice(4)).searchParams.get('after'), '1046');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });

  it('refresh() picks up changes and keeps as many books as were shown', async () => {
    const { page, context, errors } = await openPage(browser, demo());
    try {
      await page.getByRole('status').filter({ hasText: 'Showing the first 50 books' }).waitFor();
      await page.getByRole('button', { name: 'Show more books' }).click();
      await page.getByRole('status').filter({ hasText: 'Showing the first 100 books' }).waitFor();

      await api.put({ _id: 4, title: 'Added Behind Its Back', author: 'Jane Roe' });
      await page.evaluate(() => document.querySelector('books-list').refresh());
      assert.equal(await page.locator('books-list .book').count(), 100);
      assert.equal((await titles(page))[3], 'Added Behind Its Back');
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});
