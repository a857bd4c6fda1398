/**
 * The page's requests to the server's API. A server started with a token (`imgclf serve
 * --token`) wants it on every API request as `Authorization: Bearer <token>`; the page takes it
 * from its own address, `#token=<token>` (or `?token=<token>`), keeps it for the tab's session
 * and takes it out of the address bar, so that it is not bookmarked or shown on screen.
 */

const KEY = 'imgclf-token';

function readToken(): string | null {
  const url = new URL(location.href);
  const fromHash = new URLSearchParams(url.hash.slice(1)).get('token');
  const found = fromHash ?? url.searchParams.get('token');
  if (found) {
    try {
      sessionStorage.setItem(KEY, found);
    } catch {
      // Storage is off (a privacy setting): the token lasts until the page is reloaded.
    }
    url.searchParams.delete('token');
    if (fromHash !== null) url.hash = '';
    history.replaceState(history.state, '', url);
    return found;
  }
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

// Read at the first request, not at import: the page's modules are also imported in Node
// (tests, the library), where there is no address to read.
let token: string | null | undefined;

/** fetch() for the API, with the token when the page was given one. */
export function apiFetch(input: string, init: RequestInit = {}): Promise<Response> {
  token ??= typeof location === 'undefined' ? null : readToken();
  if (!token) return fetch(input, init);
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}
