// A small client for the books-ms HTTP API, shared by <books-list> and
// <book-form>. It turns every failure (an error answer, a network failure, a
// time-out) into an ApiError whose message is plain words a reader can act on.

const BOOKS_PATH = '/api/v1/books';

// Long enough for a slow database, short enough that nobody waits on a dead
// service forever without being told.
const DEFAULT_TIMEOUT_MS = 15000;

export const INT32_MIN = -2147483648;
export const INT32_MAX = 2147483647;

/** An API call that failed, with a message meant for people. */
export class ApiError extends Error {
  /**
   * @param {string} message plain words for the reader
   * @param {{status?: number, code?: string, field?: string, detail?: string, cause?: unknown}} info
   */
  constructor(message, { status = 0, code = 'network', field, detail, cause } = {}) {
    super(message, { cause });
    this.name = 'ApiError';
    this.status = status; // 0 when no HTTP answer arrived at all
    this.code = code;
    this.field = field;
    this.detail = detail; // the service's own message, when it sent one
  }
}

/** Normalises the `api` attribute: '' (same origin) or a base URL without a trailing slash. */
export function apiBase(value) {
  return (value ?? '').trim().replace(/\/+$/, '');
}

/**
 * @param {string} base '' for the page's own origin, else e.g. "http://localhost:8080"
 * @param {{timeoutMs?: number, token?: string}} options `token`: the service's
 *   write token (its WRITE_TOKEN), sent as `Authorization: Bearer` on writes
 *   (save and remove) only; reads never need it.
 */
export function booksApi(base, { timeoutMs = DEFAULT_TIMEOUT_MS, token = '' } = {}) {
  const root = apiBase(base) + BOOKS_PATH;
  const writeToken = (token ?? '').trim();

  async function call(method, url, { body, signal, what } = {}) {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; controller.abort(); }, timeoutMs);
    const onAbort = () => controller.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (writeToken && method !== 'GET') headers.Authorization = `Bearer ${writeToken}`;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: 'no-store',
      });
    } catch (cause) {
      if (signal?.aborted) throw cause; // the caller gave up; not an error to show
      if (timedOut) {
        throw new ApiError(
          `The books service did not answer within ${Math.round(timeoutMs / 1000)} seconds. Please try again.`,
          { code: 'timeout', cause });
      }
      throw new ApiError(
        'Could not reach the books service. Check that it is running and that you are online, then try again.',
        { code: 'network', cause });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }

    let payload = null;
    const text = await response.text();
    if (text) {
      try { payload = JSON.parse(text); } catch { payload = null; }
    }
    if (response.ok) return payload;
    throw errorFromResponse(response.status, payload, { ...what, tokenSent: Boolean(headers.Authorization) });
  }

  return {
    /** One page of summaries, ordered by id: books with `_id > after`, at most `limit`. */
    list({ limit, after, signal } = {}) {
      const params = new URLSearchParams();
      if (limit !== undefined) params.set('limit', String(limit));
      if (after !== undefined && after !== null) params.set('after', String(after));
      const query = params.toString();
      return call('GET', query ? `${root}?${query}` : root, { signal, what: { kind: 'list' } });
    },
    get(id, { signal } = {}) {
      return call('GET', `${root}/_id/${encodeURIComponent(id)}`, { signal, what: { kind: 'get', id } });
    },
    /** Creates or replaces the book with this `_id` (PUT is an upsert). */
    save(book, { signal } = {}) {
      return call('PUT', root, { body: book, signal, what: { kind: 'save', id: book._id } });
    },
    remove(id, { signal } = {}) {
      return call('DELETE', `${root}/_id/${encodeURIComponent(id)}`, { signal, what: { kind: 'remove', id } });
    },
  };
}

const FIELD_NAMES = { _id: 'ID', title: 'Title', author: 'Author', description: 'Description' };

function errorFromResponse(status, payload, what = {}) {
  const code = typeof payload?.error === 'string' ? payload.error : `http_${status}`;
  // The service quotes names in `backticks`; readers need no markup.
  const detail = typeof payload?.message === 'string' ? payload.message.replace(/`/g, '') : undefined;
  const field = typeof payload?.field === 'string' ? payload.field : undefined;
  const info = { status, code, field, detail };
  const id = what.id;

  switch (status) {
    case 400: {
      const about = field && FIELD_NAMES[field] ? `${FIELD_NAMES[field]}: ` : '';
      return new ApiError(
        `The books service did not accept this. ${about}${detail ?? 'The request was not valid.'}`, info);
    }
    case 401: {
      const consequence = { save: ' The book was not saved.', remove: ' The book was not deleted.' }[what.kind] ?? '';
      return new ApiError(
        what.tokenSent
          ? `The books service did not accept the write token.${consequence} Check that it is the service's write token.`
          : `The books service needs its write token to change books.${consequence} Set the form's token to it.`,
        info);
    }
    case 404:
      if (what.kind === 'get' || what.kind === 'remove') {
        return new ApiError(`There is no book with ID ${id}. Someone may have deleted it.`, info);
      }
      return new ApiError('The books service does not know this address. Check the api setting.', info);
    case 413:
      return new ApiError('This book is too large for the books service. Shorten the description and try again.', info);
    case 415:
      return new ApiError('The books service did not understand the request format.', info);
    case 503: {
      const consequence = { save: ' The book was not saved.', remove: ' The book was not deleted.' }[what.kind] ?? '';
      return new ApiError(
        `The books database is not available right now.${consequence} Please try again in a moment.`, info);
    }
    default:
      if (status >= 500) {
        return new ApiError(
          `The books service ran into a problem (error ${status}). Please try again later.`, info);
      }
      return new ApiError(
        `The books service refused the request (error ${status})${detail ? `: ${detail}` : '.'}`, info);
  }
}
