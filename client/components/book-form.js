// <book-form api="http://host:port" book-id="3">
//
// Creates, edits and deletes one book of a books-ms service. Input is checked
// before anything is sent (ID a whole number in the 32-bit range, title and
// author filled in); errors from the service or the network are shown in
// plain words and announced to screen readers. Deleting asks for confirmation
// in a modal dialog.
//
// Events (bubbling, composed):
//   book-saved    detail: { book, created }  after a successful save
//   book-deleted  detail: { book }           after a successful delete
//   book-cancel                              editing was given up
// Methods: edit(id, {focus}) loads a book, create({focus}) starts a new one.
// The `api` attribute is the service's base URL; empty means the page's origin.
// The `token` attribute (or property, which stays out of the DOM) is the
// service's write token (its WRITE_TOKEN), when it has one: sent with saves
// and deletes only, as `Authorization: Bearer`.

import { ApiError, INT32_MAX, INT32_MIN, booksApi } from './books-api.js';

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
      --_ok: var(--books-ok, #1e6b34);
    }
    :host([hidden]) { display: none; }
    h2 { font-size: 1.25rem; margin: 0 0 0.75rem; }
    h2:focus { outline: none; }
    h2:focus-visible { outline: 3px solid var(--_accent); outline-offset: 2px; }
    .field { margin-bottom: 0.9rem; }
    label { display: block; font-weight: 600; margin-bottom: 0.25rem; }
    .req { font-weight: 400; color: var(--_muted); font-size: 0.85rem; }
    input, textarea {
      box-sizing: border-box;
      width: 100%;
      font: inherit;
      padding: 0.45rem 0.6rem;
      border: 1px solid var(--_border);
      border-radius: 6px;
      background: var(--_surface);
      color: inherit;
    }
    textarea { min-height: 6rem; resize: vertical; }
    input[readonly] { background: #f1f3f5; color: var(--_muted); }
    input:focus-visible, textarea:focus-visible, button:focus-visible {
      outline: 3px solid var(--_accent);
      outline-offset: 2px;
    }
    [aria-invalid="true"] { border-color: var(--_danger); border-width: 2px; }
    .hint { color: var(--_muted); font-size: 0.85rem; margin: 0.2rem 0 0; }
    .field-error { color: var(--_danger); font-size: 0.9rem; font-weight: 600; margin: 0.25rem 0 0; }
    .field-error:empty { display: none; }
    .alert:not(:empty) {
      border: 1px solid var(--_danger);
      border-left-width: 6px;
      color: var(--_danger);
      background: #fff5f5;
      padding: 0.5rem 0.75rem;
      border-radius: 6px;
      margin: 0 0 0.9rem;
    }
    .alert:focus { outline: none; }
    .status { color: var(--_ok); margin: 0 0 0.75rem; min-height: 1.2em; }
    /* Empty but still rendered: a live region must exist before it speaks. */
    .status:empty { min-height: 0; margin: 0; }
    .actions { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
    button {
      font: inherit;
      padding: 0.45rem 1rem;
      border-radius: 6px;
      border: 1px solid var(--_border);
      background: var(--_surface);
      color: inherit;
      cursor: pointer;
    }
    button.primary { background: var(--_accent); border-color: var(--_accent); color: #fff; }
    button.danger { color: var(--_danger); border-color: var(--_danger); }
    button.danger-solid { background: var(--_danger); border-color: var(--_danger); color: #fff; }
    .delete { margin-left: auto; }
    [aria-disabled="true"] { opacity: 0.6; cursor: progress; }
    dialog {
      border: 1px solid var(--_border);
      border-radius: 8px;
      padding: 1.25rem;
      max-width: 26rem;
      box-shadow: 0 10px 30px rgba(0, 0, 0, 0.25);
    }
    dialog::backdrop { background: rgba(20, 24, 31, 0.45); }
    dialog h3 { margin: 0 0 0.5rem; font-size: 1.1rem; }
    dialog p { margin: 0 0 1rem; }
  </style>
  <form novalidate>
    <h2 id="heading" tabindex="-1" part="heading">New book</h2>
    <div class="alert" role="alert" tabindex="-1"></div>
    <p class="status" role="status"></p>
    <div class="field">
      <label for="id">ID <span class="req" aria-hidden="true">(required)</span></label>
      <input id="id" name="_id" required inputmode="numeric" autocomplete="off"
        aria-describedby="id-error id-hint">
      <p id="id-hint" class="hint">A whole number that no other book uses, e.g. 42.</p>
      <p id="id-error" class="field-error"></p>
    </div>
    <div class="field">
      <label for="title">Title <span class="req" aria-hidden="true">(required)</span></label>
      <input id="title" name="title" required autocomplete="off" aria-describedby="title-error">
      <p id="title-error" class="field-error"></p>
    </div>
    <div class="field">
      <label for="author">Author <span class="req" aria-hidden="true">(required)</span></label>
      <input id="author" name="author" required autocomplete="off" aria-describedby="author-error">
      <p id="author-error" class="field-error"></p>
    </div>
    <div class="field">
      <label for="description">Description</label>
      <textarea id="description" name="description" aria-describedby="description-error"></textarea>
      <p id="description-error" class="field-error"></p>
    </div>
    <div class="actions">
      <button type="submit" class="primary save">Save book</button>
      <button type="button" class="cancel">Clear</button>
      <button type="button" class="danger delete" hidden>Delete…</button>
    </div>
  </form>
  <dialog aria-labelledby="confirm-title" aria-describedby="confirm-text">
    <h3 id="confirm-title">Delete this book?</h3>
    <p id="confirm-text"></p>
    <div class="actions">
      <button type="button" class="keep" autofocus>Keep it</button>
      <button type="button" class="danger-solid confirm">Delete</button>
    </div>
  </dialog>
`;

const FIELDS = ['_id', 'title', 'author', 'description'];
const INPUT_IDS = { _id: 'id', title: 'title', author: 'author', description: 'description' };

/**
 * Checks a book as typed. Returns { book, errors } where errors maps a field
 * name to a sentence; the book is only meaningful when errors is empty.
 */
export function checkBook(values) {
  const errors = {};
  const rawId = String(values._id ?? '').trim();
  let id = null;
  if (rawId === '') {
    errors._id = 'Enter an ID.';
  } else if (!/^[+-]?\d+$/.test(rawId)) {
    errors._id = 'The ID must be a whole number, such as 42.';
  } else {
    id = Number(rawId);
    if (!Number.isSafeInteger(id) || id < INT32_MIN || id > INT32_MAX) {
      errors._id = `The ID must be between ${INT32_MIN} and ${INT32_MAX}.`;
    }
  }
  const title = String(values.title ?? '').trim();
  if (title === '') errors.title = 'Enter a title.';
  const author = String(values.author ?? '').trim();
  if (author === '') errors.author = 'Enter an author.';
  const description = String(values.description ?? '');
  return { book: { _id: id, title, author, description }, errors };
}

export class BookForm extends HTMLElement {
  static get observedAttributes() { return ['api', 'book-id']; }

  #root;
  #els;
  #book = null; // the stored book being edited; null while creating a new one
  #busy = false;
  #generation = 0; // bumped whenever what the form shows changes hands
  #controller = null;
  #started = false;
  #token = null; // set through the `token` property, never reflected to the DOM

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.append(template.content.cloneNode(true));
    const $ = (sel) => this.#root.querySelector(sel);
    this.#els = {
      form: $('form'),
      heading: $('#heading'),
      alert: $('.alert'),
      status: $('.status'),
      save: $('.save'),
      cancel: $('.cancel'),
      remove: $('.delete'),
      dialog: $('dialog'),
      confirmText: $('#confirm-text'),
      confirm: $('.confirm'),
      keep: $('.keep'),
      inputs: Object.fromEntries(FIELDS.map((f) => [f, $(`#${INPUT_IDS[f]}`)])),
    };
    this.#els.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.save();
    });
    this.#els.cancel.addEventListener('click', () => {
      if (this.#busy) return;
      const wasEditing = this.#book !== null;
      this.create({ focus: true });
      if (wasEditing) this.dispatchEvent(new CustomEvent('book-cancel', { bubbles: true, composed: true }));
    });
    this.#els.remove.addEventListener('click', () => this.#askToDelete());
    this.#els.keep.addEventListener('click', () => this.#els.dialog.close('keep'));
    this.#els.confirm.addEventListener('click', () => this.#els.dialog.close('delete'));
    this.#els.dialog.addEventListener('close', () => {
      if (this.#els.dialog.returnValue === 'delete') this.remove();
      this.#els.dialog.returnValue = '';
    });
    for (const [field, input] of Object.entries(this.#els.inputs)) {
      // Once the reader fixes a field, stop calling it wrong.
      input.addEventListener('input', () => {
        if (input.getAttribute('aria-invalid') !== 'true') return;
        const { errors } = checkBook(this.#values());
        if (!errors[field]) this.#setFieldError(field, '');
      });
    }
  }

  connectedCallback() {
    if (this.#started) return;
    this.#started = true;
    const id = this.getAttribute('book-id');
    if (id !== null && id !== '') this.edit(id);
  }

  disconnectedCallback() {
    this.#controller?.abort();
  }

  attributeChangedCallback(name, oldValue, newValue) {
    // Attributes seen while upgrading are handled once, in connectedCallback.
    if (name === 'book-id' && oldValue !== newValue && this.#started && this.isConnected) {
      if (newValue === null || newValue === '') this.create();
      else this.edit(newValue);
    }
  }

  get api() { return this.getAttribute('api') ?? ''; }
  set api(value) { this.setAttribute('api', value ?? ''); }

  /** The write token: the property if set, else the `token` attribute. */
  get token() { return this.#token ?? this.getAttribute('token') ?? ''; }
  set token(value) { this.#token = value ?? null; }

  /** The API client, with the write token for saves and deletes. */
  #api() { return booksApi(this.api, { token: this.token }); }

  /** The stored book being edited (a copy), or null for a new book. */
  get book() { return this.#book ? { ...this.#book } : null; }

  /** True while a request is in flight. */
  get busy() { return this.#busy; }

  /** Empties the form for a new book. */
  create({ focus = false } = {}) {
    this.#takeOver();
    this.#book = null;
    this.#fill({ _id: '', title: '', author: '', description: '' });
    this.#clearErrors();
    this.#setStatus('');
    this.#setMode();
    if (focus) this.#els.inputs._id.focus();
  }

  /** Loads the book with this id for editing. Resolves to true when it was loaded. */
  async edit(id, { focus = false } = {}) {
    const { signal, generation } = this.#takeOver();
    this.#clearErrors();
    this.#setStatus(`Loading book ${id}…`);
    this.#setBusy(true);
    try {
      const book = await this.#api().get(id, { signal });
      if (generation !== this.#generation) return false;
      this.#book = normalise(book);
      this.#fill(this.#book);
      this.#setMode();
      this.#setStatus(`Editing “${this.#book.title}”.`);
      if (focus) this.#els.inputs.title.focus();
      return true;
    } catch (error) {
      if (signal.aborted || generation !== this.#generation) return false;
      this.#setStatus('');
      this.#showError(error, { focus });
      return false;
    } finally {
      if (generation === this.#generation) this.#setBusy(false);
    }
  }

  /** Checks and saves what is typed. Resolves to the stored book, or null. */
  async save() {
    if (this.#busy) return null;
    this.#clearErrors();
    this.#setStatus('');
    const { book, errors } = checkBook(this.#values());
    if (Object.keys(errors).length > 0) {
      this.#showInvalid(errors);
      return null;
    }
    const creating = this.#book === null;
    const { signal, generation } = this.#takeOver();
    const api = this.#api();
    this.#setBusy(true);
    this.#setStatus('Saving…');
    try {
      if (creating) {
        // PUT replaces whatever has this id; creating must not overwrite
        // someone else's book by accident.
        const existing = await findBook(api, book._id, signal);
        if (generation !== this.#generation) return null;
        if (existing) {
          this.#setStatus('');
          this.#showInvalid({
            _id: `There is already a book with ID ${book._id} (“${existing.title}”). Choose another ID, or open that book to edit it.`,
          });
          return null;
        }
      }
      const stored = normalise(await api.save(book, { signal }));
      if (generation !== this.#generation) return null;
      this.#book = stored;
      this.#fill(stored);
      this.#setMode();
      this.#setStatus(creating ? `Added “${stored.title}”.` : `Saved your changes to “${stored.title}”.`);
      this.dispatchEvent(new CustomEvent('book-saved', {
        bubbles: true, composed: true, detail: { book: { ...stored }, created: creating },
      }));
      return stored;
    } catch (error) {
      if (signal.aborted || generation !== this.#generation) return null;
      this.#setStatus('');
      this.#showError(error, { focus: true, action: 'save' });
      return null;
    } finally {
      if (generation === this.#generation) this.#setBusy(false);
    }
  }

  /** Deletes the book being edited, without asking. Resolves to true on success. */
  async remove() {
    if (this.#busy || this.#book === null) return false;
    const book = this.#book;
    const { signal, generation } = this.#takeOver();
    this.#clearErrors();
    this.#setBusy(true);
    this.#setStatus(`Deleting “${book.title}”…`);
    try {
      const removed = normalise(await this.#api().remove(book._id, { signal }));
      if (generation !== this.#generation) return false;
      this.create();
      this.#setStatus(`Deleted “${removed.title || book.title}”.`);
      // The Delete button is gone; the heading is the next sensible place.
      this.#els.heading.focus();
      this.dispatchEvent(new CustomEvent('book-deleted', {
        bubbles: true, composed: true, detail: { book: { ...book, ...removed } },
      }));
      return true;
    } catch (error) {
      if (signal.aborted || generation !== this.#generation) return false;
      this.#setStatus('');
      this.#showError(error, { focus: true, action: 'remove' });
      return false;
    } finally {
      if (generation === this.#generation) this.#setBusy(false);
    }
  }

  #askToDelete() {
    if (this.#busy || this.#book === null) return;
    const { title, author } = this.#book;
    this.#els.confirmText.textContent =
      `“${title}” by ${author} (ID ${this.#book._id}) will be removed for good.`;
    this.#els.dialog.returnValue = '';
    this.#els.dialog.showModal();
    this.#els.keep.focus(); // the safe choice is the default one
  }

  // A new action supersedes whatever was in flight.
  #takeOver() {
    this.#controller?.abort();
    this.#controller = new AbortController();
    this.#generation += 1;
    this.#setBusy(false);
    return { signal: this.#controller.signal, generation: this.#generation };
  }

  #values() {
    return Object.fromEntries(FIELDS.map((f) => [f, this.#els.inputs[f].value]));
  }

  #fill(book) {
    for (const f of FIELDS) this.#els.inputs[f].value = book[f] === undefined || book[f] === null ? '' : String(book[f]);
  }

  #setMode() {
    const editing = this.#book !== null;
    this.toggleAttribute('editing', editing);
    this.#els.heading.textContent = editing ? `Edit book ${this.#book._id}` : 'New book';
    // The id is the key: changing it while editing would quietly create a copy.
    this.#els.inputs._id.readOnly = editing;
    this.#root.querySelector('#id-hint').textContent = editing
      ? 'The ID of a stored book cannot be changed.'
      : 'A whole number that no other book uses, e.g. 42.';
    this.#els.save.textContent = editing ? 'Save changes' : 'Save book';
    this.#els.cancel.textContent = editing ? 'Cancel' : 'Clear';
    this.#els.remove.hidden = !editing;
  }

  #setBusy(busy) {
    this.#busy = busy;
    this.toggleAttribute('busy', busy);
    this.#els.form.setAttribute('aria-busy', String(busy));
    // aria-disabled rather than disabled: a disabled button would throw
    // keyboard focus out to the page while a request runs.
    for (const button of [this.#els.save, this.#els.cancel, this.#els.remove]) {
      if (busy) button.setAttribute('aria-disabled', 'true');
      else button.removeAttribute('aria-disabled');
    }
  }

  #setStatus(text) { this.#els.status.textContent = text; }

  #clearErrors() {
    this.#els.alert.textContent = '';
    for (const f of FIELDS) this.#setFieldError(f, '');
  }

  #setFieldError(field, message) {
    const input = this.#els.inputs[field];
    this.#root.querySelector(`#${INPUT_IDS[field]}-error`).textContent = message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  #showInvalid(errors) {
    const fields = FIELDS.filter((f) => errors[f]);
    for (const f of fields) this.#setFieldError(f, errors[f]);
    const count = fields.length === 1 ? 'one field' : `${fields.length} fields`;
    this.#els.alert.textContent = `The book was not saved. Please correct ${count}: ${fields.map((f) => errors[f]).join(' ')}`;
    this.#els.inputs[fields[0]].focus();
  }

  #showError(error, { focus = false } = {}) {
    const message = error instanceof ApiError
      ? error.message
      : `Something unexpected went wrong in this page: ${error?.message ?? error}`;
    this.#els.alert.textContent = message;
    const field = error instanceof ApiError && error.field;
    if (field && this.#els.inputs[field]) {
      this.#setFieldError(field, error.detail ?? message);
      if (focus) this.#els.inputs[field].focus();
    } else if (focus) {
      this.#els.alert.focus();
    }
  }
}

async function findBook(api, id, signal) {
  try {
    return await api.get(id, { signal });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function normalise(book) {
  return {
    _id: book?._id,
    title: book?.title ?? '',
    author: book?.author ?? '',
    description: book?.description ?? '',
  };
}

if (!customElements.get('book-form')) customElements.define('book-form', BookForm);
