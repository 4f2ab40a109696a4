#!/usr/bin/env bash
# Puts the chapter's three demo books into a books-ms whose collection is
# empty; leaves any other collection alone.  Usage: seed-demo-books.sh URL
set -euo pipefail
url=${1:?usage: seed-demo-books.sh URL (a books-ms base URL)}
first=$(curl -fsS -m 5 "$url/api/v1/books?limit=1") || {
  printf 'seed-demo-books: error: cannot list the books at %s (is books-ms running there?)\n' "$url" >&2
  exit 1
}
[[ $first == "[]" ]] || exit 0
printf '==> adding demo books to the empty collection at %s\n' "$url" >&2
while IFS= read -r book; do
  curl -fsS -m 5 -X PUT -H 'Content-Type: application/json' -d "$book" "$url/api/v1/books" >/dev/null
done <<'BOOKS'
{"_id":1,"title":"My First Book","author":"John Doe","description":"Not a very good book"}
{"_id":2,"title":"My Second Book","author":"John Doe","description":"Not as bad as the first book"}
{"_id":3,"title":"My Third Book","author":"John Doe","description":"Failed writers club"}
BOOKS
