/**
 * No answer shows where things are on the server's disk: a path in the run's config or data
 * source, and an absolute path inside an error message, is shown as its base name (the run
 * directory "runs/demo" as "demo", an image folder "/home/me/photos" as "photos"). Nor does
 * one show credentials in a URL the run records (a backbone's address, say): user and password
 * and the values of its query are replaced.
 */
import path from 'node:path';

/** Config and data-source keys that hold paths (config: out, data, testData, dataDir; sources: path, testPath, dataDir). */
const PATH_KEYS = new Set(['out', 'data', 'testData', 'dataDir', 'path', 'testPath']);

const isAbsolute = (p: string) => path.posix.isAbsolute(p) || path.win32.isAbsolute(p);

/** A path as answers show it: its last segment. */
export function baseName(p: string): string {
  const trimmed = p.replace(/[/\\]+$/, '');
  const base = path.win32.isAbsolute(trimmed) ? path.win32.basename(trimmed) : path.posix.basename(trimmed);
  return base || '.';
}

const URL_LIKE = /^[a-z][a-z\d+.-]*:\/\//i;

/**
 * `url` without what may be a credential: `user:password@` becomes `redacted@`, every query
 * value and the fragment become `redacted` (a signed URL's signature, an access token).
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Unparsable: cut whatever could hold a secret, the part before '@' and from '?' on.
    return url.replace(/\/\/[^/@]*@/, '//redacted@').replace(/[?#].*$/, '?redacted');
  }
  if (u.username || u.password) {
    u.username = 'redacted';
    u.password = '';
  }
  for (const k of new Set(u.searchParams.keys())) u.searchParams.set(k, 'redacted');
  if (u.hash) u.hash = 'redacted';
  return u.toString();
}

/**
 * A copy of `value` (JSON-like) with every path of a PATH_KEYS key, and every absolute path, cut
 * to its base name, and every URL redacted (redactUrl).
 */
export function publicPaths<T>(value: T): T {
  const walk = (v: unknown, key?: string): unknown => {
    if (typeof v === 'string' && URL_LIKE.test(v)) return redactUrl(v);
    if (typeof v === 'string')
      return (key !== undefined && PATH_KEYS.has(key)) || isAbsolute(v) ? baseName(v) : v;
    if (Array.isArray(v)) return v.map((x) => walk(x));
    if (v && typeof v === 'object')
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]));
    return v;
  };
  return walk(value) as T;
}

/**
 * Absolute paths in a message: POSIX ("/home/me/x", at the start or after a space, quote,
 * bracket, '=' or ','), Windows ("C:\x") and home-relative ("~/x"), up to the next space,
 * quote, bracket, ',' or ';'. URLs ("https://host/x") are left alone.
 */
const ABSOLUTE_IN_TEXT = /(^|[\s'"`([{=,])((?:\/|~\/|[A-Za-z]:\\)[^\s'"`()[\]{},;]*)/g;

/** `message` with each absolute path cut to its base name. */
export function stripPaths(message: string): string {
  return message.replace(ABSOLUTE_IN_TEXT, (_m, lead: string, p: string) => lead + baseName(p));
}
