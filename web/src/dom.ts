/** Small DOM helpers the page's sections share. */

/** The element with this id (the page's markup is in web/index.html). */
export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

/** The server's error message, or the HTTP status. */
export async function errorText(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { message?: string };
  return body.message ?? `HTTP ${res.status}`;
}

/**
 * Files from a file picker and from a drop zone, handed to `take` the same way (the zone shows
 * `.over` while something is dragged over it). Empty picks and drops are ignored.
 */
export function acceptFiles(
  input: HTMLInputElement,
  zone: HTMLElement,
  take: (files: File[]) => unknown,
): void {
  input.addEventListener('change', () => {
    const picked = [...(input.files ?? [])];
    input.value = '';
    if (picked.length) void take(picked);
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const dropped = [...(e.dataTransfer?.files ?? [])];
    if (dropped.length) void take(dropped);
  });
}
