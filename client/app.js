// The small books app on "/": wires <books-list> and <book-form> together
// through their events. `?api=http://host:port` points both at another service.

const list = document.getElementById('list');
const form = document.getElementById('form');

const api = new URLSearchParams(location.search).get('api');
if (api !== null) {
  list.setAttribute('api', api);
  form.setAttribute('api', api);
}

list.addEventListener('book-open', (event) => {
  list.selected = event.detail.id;
  form.edit(event.detail.id, { focus: true });
});

list.addEventListener('book-new', () => {
  list.selected = null;
  form.create({ focus: true });
});

form.addEventListener('book-saved', (event) => {
  list.selected = event.detail.book._id;
  list.refresh();
});

form.addEventListener('book-deleted', () => {
  list.selected = null;
  list.refresh();
});

form.addEventListener('book-cancel', () => {
  const id = list.selected;
  list.selected = null;
  // Back to where the reader came from.
  if (id !== null) list.focusBook(id);
});

// Imported after the attributes are set, so the first request goes to the
// right place, and after the listeners are in place, so a book shown is a book
// that can be opened. The form comes first: the list's events call into it.
await import('./components/book-form.js');
await import('./components/books-list.js');
