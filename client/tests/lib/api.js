// Talks to the service from the test process, to seed books and to check
// what really reached the database.

export function apiClient(baseUrl) {
  const books = `${baseUrl}/api/v1/books`;
  const timeout = () => AbortSignal.timeout(10_000);

  async function json(response) {
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }

  return {
    async put(book) {
      const response = await fetch(books, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(book),
        signal: timeout(),
      });
      const result = await json(response);
      if (result.status !== 200) throw new Error(`seeding book ${book._id} failed: ${result.status} ${JSON.stringify(result.body)}`);
      return result.body;
    },
    async get(id) {
      return json(await fetch(`${books}/_id/${id}`, { signal: timeout() }));
    },
    async list() {
      return json(await fetch(books, { signal: timeout() }));
    },
  };
}
