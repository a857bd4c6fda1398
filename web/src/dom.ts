/** Small DOM helpers the page's sections share. */

/** The element with this id (the page's markup is in web/index.html). */
export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

/** The server's error message, or the HTTP status. */
export async function errorText(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return body.message ?? `HTTP ${res.status}`;
}
