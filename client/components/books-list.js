// <books-list api="http://host:port" page-size="100" selected="3">
//
// Lists the books of a books-ms service by title, in pages (the API's
// `limit`/`after` parameters), so a long collection is never fetched or
// rendered whole. Keyboard: Tab reaches the list once, the arrow keys, Home
// and End move between books, Enter or Space opens one.
//
// Events (bubbling, composed):
//   book-open  detail: { id }   a book was chosen for editing
//   book-new                    the "New book" button was pressed
// Methods: refresh() reloads what is shown and resolves when done.
// The `api` attribute is the service's base URL; empty means the page's origin.

import { booksApi } from './books-api.js';

const DEFAULT_PAGE_SIZE = 100;
// One more than the page is asked for so we know whether another page exists
// without a second request; the API allows at most 1000 per request.
const MAX_PAGE_SIZE = 999;
// A refresh reloads as many books as were shown; this bounds that loop even
// if the service misbehaved and never ran out of books.
const MAX_REFRESH_PAGES = 1000;

const template = document.createElement('template');
template.innerHTML = `
  <style>
    :host {
      display: block;
      font: inherit;
      color: inherit;
      --_accent: var(--books-accent, #1d4f91);
      --_border: var(--books-border, #c8ccd2);
      --_muted: var(--books-muted, #5b6470);
      --_danger: var(--books-danger, #a4161a);
      --_surface: var(--books-surface, #ffffff);
      --_selected: var(--books-selected, #e6eef9);
    }
    :host([hidden]) { display: none; }
    .bar {
      display: flex;
      align-items: center;
      justify-content: space-between;
      gap: 0.75rem;
      margin-bottom: 0.5rem;
    }
    h2 { font-size: 1.25rem; margin: 0; }
    button {
      font: inherit;
      border-radius: 6px;
      cursor: pointer;
    }
    .action {
      padding: 0.4rem 0.9rem;
      border: 1px solid var(--_accent);
      background: var(--_accent);
      color: #fff;
    }
    .secondary {
      padding: 0.4rem 0.9rem;
      border: 1px solid var(--_border);
      background: var(--_surface);
      color: inherit;
    }
    button:focus-visible {
      outline: 3px solid var(--_accent);
      outline-offset: 2px;
    }
    .status { color: var(--_muted); font-size: 0.9rem; margin: 0 0 0.5rem; min-height: 1.2em; }
    /* Empty but still rendered: a live region must exist before it speaks. */
    .status:empty { min-height: 0; margin: 0; }
    .alert:not(:empty) {
      border: 1px solid var(--_danger);
      border-left-width: 6px;
      color: var(--_danger);
      background: #fff5f5;
      padding: 0.5rem 0.75rem;
      border-radius: 6px;
      margin: 0 0 0.5rem;
    }
    .retry { margin-bottom: 0.75rem; }
    ul {
      list-style: none;
      margin: 0;
      padding: 0;
      border: 1px solid var(--_border);
      border-radius: 6px;
      background: var(--_surface);
      max-height: var(--books-list-max-height, 28rem);
      overflow-y: auto;
    }
    ul:empty { display: none; }
    li + li { border-top: 1px solid var(--_border); }
    .book {
      display: block;
      width: 100%;
      text-align: left;
      padding: 0.55rem 0.75rem;
      border: 0;
      border-radius: 0;
      background: transparent;
      color: inherit;
    }
    .book:hover { background: #f3f5f8; }
    .book[aria-current="true"] {
      background: var(--_selected);
      box-shadow: inset 4px 0 0 var(--_accent);
    }
    .book:focus-visible { outline-offset: -3px; }
    .title { display: block; font-weight: 600; }
    .author { display: block; color: var(--_muted); font-size: 0.9rem; }
    .empty { color: var(--_muted); font-style: italic; }
    .more { margin-top: 0.5rem; }
    .visually-hidden {
      position: absolute;
      width: 1px;
      height: 1px;
      overflow: hidden;
      clip: rect(0 0 0 0);
      white-space: nowrap;
    }
  </style>
  <section aria-labelledby="heading">
    <div class="bar">
      <h2 id="heading" part="heading">Books</h2>
      <button type="button" class="action new" part="new-button">New book</button>
    </div>
    <p class="status" role="status"></p>
    <div class="alert" role="alert"></div>
    <button type="button" class="secondary retry" hidden>Try again</button>
    <p id="hint" class="visually-hidden">Use the arrow keys to move between books, Enter to open one.</p>
    <ul aria-labelledby="heading"></ul>
    <p class="empty" hidden>No books yet. Use “New book” to add the first one.</p>
    <button type="button" class="secondary more" hidden>Show more books</button>
  </section>
`;

export class BooksList extends HTMLElement {
  static get observedAttributes() { return ['api', 'selected', 'page-size', 'heading']; }

  #root;
  #els;
  #books = [];
  #hasMore = false;
  #loaded = false;
  #generation = 0; // bumped by every full reload; late answers of older ones are dropped
  #controller = null;
  #pending = null;
  #started = false; // set once connected: attributes seen while upgrading need no reload

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.append(template.content.cloneNode(true));
    const $ = (sel) => this.#root.querySelector(sel);
    this.#els = {
      heading: $('#heading'),
      list: $('ul'),
      status: $('.status'),
      alert: $('.alert'),
      retry: $('.retry'),
      empty: $('.empty'),
      more: $('.more'),
      newButton: $('.new'),
    };
    this.#els.newButton.addEventListener('click', () => {
      this.dispatchEvent(new CustomEvent('book-new', { bubbles: true, composed: true }));
    });
    this.#els.retry.addEventListener('click', () => {
      // Keep keyboard focus somewhere sensible: the retry button hides itself.
      this.#els.heading.setAttribute('tabindex', '-1');
      this.#els.heading.focus();
      this.refresh();
    });
    this.#els.more.addEventListener('click', () => this.#loadMore());
    this.#els.list.addEventListener('click', (event) => {
      const button = event.target.closest('button.book');
      if (button) this.#open(button);
    });
    this.#els.list.addEventListener('keydown', (event) => this.#onKeydown(event));
    this.#els.list.addEventListener('focusin', (event) => {
      const button = event.target.closest('button.book');
      if (button) this.#makeTabbable(button);
    });
  }

  connectedCallback() {
    this.#upgradeProperty('selected');
    this.#started = true;
    if (!this.#loaded && !this.#pending) this.refresh();
  }

  disconnectedCallback() {
    this.#controller?.abort();
    this.#controller = null;
    this.#pending = null;
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue) return;
    if (name === 'heading') {
      this.#els.heading.textContent = newValue || 'Books';
    } else if (name === 'selected') {
      this.#markSelected();
    } else if ((name === 'api' || name === 'page-size') && this.#started && this.isConnected) {
      // A different service (or page size): start from the first page again.
      this.#books = [];
      this.#render();
      this.refresh();
    }
  }

  get api() { return this.getAttribute('api') ?? ''; }
  set api(value) { this.setAttribute('api', value ?? ''); }

  /** The id of the book shown as selected (aria-current), or null. */
  get selected() {
    const value = this.getAttribute('selected');
    return value === null || value === '' ? null : Number(value);
  }
  set selected(id) {
    if (id === null || id === undefined || id === '') this.removeAttribute('selected');
    else this.setAttribute('selected', String(id));
  }

  get pageSize() {
    const n = Number.parseInt(this.getAttribute('page-size') ?? '', 10);
    if (!Number.isFinite(n) || n < 1) return DEFAULT_PAGE_SIZE;
    return Math.min(n, MAX_PAGE_SIZE);
  }
  set pageSize(n) { this.setAttribute('page-size', String(n)); }

  /** The summaries shown right now (a copy). */
  get books() { return this.#books.map((book) => ({ ...book })); }

  /** Whether the service has more books than are shown. */
  get hasMore() { return this.#hasMore; }

  /**
   * Reloads from the first book, as many books as are shown now (at least one
   * page), keeping keyboard focus on the same book when it is still there.
   */
  refresh() {
    this.#controller?.abort();
    const controller = new AbortController();
    this.#controller = controller;
    const generation = ++this.#generation;
    const want = Math.max(this.pageSize, this.#books.length);

    this.#setBusy(true, 'Loading books…');
    const run = async () => {
      const books = [];
      let after;
      let hasMore = false;
      for (let page = 0; page < MAX_REFRESH_PAGES; page += 1) {
        const batch = await this.#fetchPage(after, controller.signal);
        books.push(...batch.books);
        hasMore = batch.hasMore;
        if (!hasMore || books.length >= want || batch.books.length === 0) break;
        after = batch.books[batch.books.length - 1]._id;
      }
      if (generation !== this.#generation) return;
      // Re-rendering removes the focused button; put focus back on the same
      // book (or its neighbour) so a keyboard user keeps their place.
      const focusedId = this.#focusedBookId();
      this.#books = books;
      this.#hasMore = hasMore;
      this.#loaded = true;
      this.#showError(null);
      this.#render();
      if (focusedId !== null) this.#focusBook(focusedId, true);
      this.#setBusy(false, this.#summary());
    };
    const pending = run().catch((error) => {
      if (controller.signal.aborted || generation !== this.#generation) return;
      this.#setBusy(false, '');
      this.#showError(error);
    }).finally(() => {
      if (this.#pending === pending) this.#pending = null;
    });
    this.#pending = pending;
    return pending;
  }

  /** Moves keyboard focus to the book with this id, if it is shown. */
  focusBook(id) { return this.#focusBook(id, false); }

  async #loadMore() {
    if (this.#pending || !this.#hasMore || this.#books.length === 0) return;
    const controller = new AbortController();
    this.#controller = controller;
    const generation = this.#generation;
    const after = this.#books[this.#books.length - 1]._id;
    this.#setBusy(true, 'Loading more books…');
    const pending = (async () => {
      const batch = await this.#fetchPage(after, controller.signal);
      if (generation !== this.#generation) return;
      const firstNew = batch.books[0];
      this.#books.push(...batch.books);
      this.#hasMore = batch.hasMore;
      this.#showError(null);
      this.#appendItems(batch.books);
      this.#render({ itemsDone: true });
      // The "Show more" button may have just disappeared: carry on from the
      // first book that was added rather than dropping focus on the page.
      if (firstNew) this.#focusBook(firstNew._id, false);
      this.#setBusy(false, this.#summary());
    })().catch((error) => {
      if (controller.signal.aborted || generation !== this.#generation) return;
      this.#setBusy(false, '');
      this.#showError(error);
    }).finally(() => {
      if (this.#pending === pending) this.#pending = null;
    });
    this.#pending = pending;
    return pending;
  }

  async #fetchPage(after, signal) {
    const size = this.pageSize;
    const api = booksApi(this.api);
    const rows = await api.list({ limit: size + 1, after, signal });
    if (!Array.isArray(rows)) throw new Error('The books service sent a list in an unexpected shape.');
    return { books: rows.slice(0, size), hasMore: rows.length > size };
  }

  #summary() {
    const n = this.#books.length;
    if (n === 0) return 'No books.';
    const books = n === 1 ? '1 book' : `${n} books`;
    return this.#hasMore ? `Showing the first ${books}; more are available.` : `${books}.`;
  }

  #setBusy(busy, message) {
    this.toggleAttribute('busy', busy);
    this.#els.list.setAttribute('aria-busy', String(busy));
    this.#els.status.textContent = message;
  }

  #showError(error) {
    if (!error) {
      this.#els.alert.textContent = '';
      this.#els.retry.hidden = true;
      return;
    }
    const message = error.name === 'ApiError' ? error.message : `Something unexpected happened: ${error.message}`;
    this.#els.alert.textContent = `Could not load the books. ${message}`;
    this.#els.retry.hidden = false;
  }

  #render({ itemsDone = false } = {}) {
    if (!itemsDone) {
      const fragment = document.createDocumentFragment();
      for (const book of this.#books) fragment.append(this.#item(book));
      this.#els.list.replaceChildren(fragment);
    }
    this.#els.empty.hidden = !(this.#loaded && this.#books.length === 0);
    this.#els.more.hidden = !this.#hasMore;
    this.#markSelected();
  }

  #appendItems(books) {
    const fragment = document.createDocumentFragment();
    for (const book of books) fragment.append(this.#item(book));
    this.#els.list.append(fragment);
  }

  #item(book) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'book';
    button.dataset.id = String(book._id);
    button.tabIndex = -1;
    button.setAttribute('aria-describedby', 'hint');
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = book.title;
    const author = document.createElement('span');
    author.className = 'author';
    author.textContent = book.author ? `by ${book.author}` : '';
    button.append(title, author);
    li.append(button);
    return li;
  }

  #buttons() { return [...this.#els.list.querySelectorAll('button.book')]; }

  #markSelected() {
    const selected = this.selected;
    let current = null;
    for (const button of this.#buttons()) {
      const isSelected = selected !== null && Number(button.dataset.id) === selected;
      if (isSelected) {
        button.setAttribute('aria-current', 'true');
        current = button;
      } else {
        button.removeAttribute('aria-current');
      }
    }
    // Exactly one book is reachable with Tab: the focused, else the selected, else the first.
    const focused = this.#root.activeElement?.closest?.('button.book');
    this.#makeTabbable(focused ?? current ?? this.#buttons()[0] ?? null);
  }

  #makeTabbable(target) {
    for (const button of this.#buttons()) button.tabIndex = button === target ? 0 : -1;
  }

  #focusedBookId() {
    const focused = this.#root.activeElement?.closest?.('button.book');
    return focused ? Number(focused.dataset.id) : null;
  }

  #focusBook(id, fallbackToNeighbour) {
    const buttons = this.#buttons();
    let target = buttons.find((button) => Number(button.dataset.id) === id);
    if (!target && fallbackToNeighbour && buttons.length) {
      // The focused book went away: land on the next one after it.
      target = buttons.find((button) => Number(button.dataset.id) > id) ?? buttons[buttons.length - 1];
    }
    if (!target) return false;
    this.#makeTabbable(target);
    target.focus();
    return true;
  }

  #onKeydown(event) {
    const button = event.target.closest('button.book');
    if (!button) return;
    const buttons = this.#buttons();
    const index = buttons.indexOf(button);
    let next = null;
    switch (event.key) {
      case 'ArrowDown': next = buttons[index + 1]; break;
      case 'ArrowUp': next = buttons[index - 1]; break;
      case 'Home': next = buttons[0]; break;
      case 'End': next = buttons[buttons.length - 1]; break;
      default: return;
    }
    event.preventDefault();
    if (next) {
      this.#makeTabbable(next);
      next.focus();
    }
  }

  #open(button) {
    const id = Number(button.dataset.id);
    this.#makeTabbable(button);
    this.dispatchEvent(new CustomEvent('book-open', { bubbles: true, composed: true, detail: { id } }));
  }

  // A property set before the element was upgraded shadows the accessor; re-apply it.
  #upgradeProperty(name) {
    if (Object.prototype.hasOwnProperty.call(this, name)) {
      const value = this[name];
      delete this[name];
      this[name] = value;
    }
  }
}

if (!customElements.get('books-list')) customElements.define('books-list', BooksList);
