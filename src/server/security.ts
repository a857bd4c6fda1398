/**
 * Who may use the server, checked on every request before its body is read (onRequest hooks):
 *
 * - security headers on every answer (helmet, with a Content-Security-Policy written for the
 *   page web/ builds);
 * - on a server bound to a loopback address, a check of the Host header against DNS
 *   rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 would
 *   otherwise reach this server as same-origin;
 * - no cross-site requests to the API: a page on another site cannot read the answers (no
 *   CORS), but without this it could still make a visitor's browser send images to decode and
 *   classify, or start 47 MB downloads. Browsers say where a request comes from (Sec-Fetch-Site,
 *   Origin); clients that are no browser send neither and pass;
 * - with a token, `Authorization: Bearer <token>` on every API request but /api/health.
 *
 * helmet itself rather than @fastify/helmet: the plugin builds helmet's middleware anew on every
 * request (its onRequest hook calls helmet(options) each time, plus an async hook and a reply
 * decorator). Under load that garbage outlived the young generation while requests waited
 * for an inference slot, and the heap grew by about a megabyte a second until the next full GC
 * (bench/serve-load.ts); the same middleware built once, as here, costs nothing measurable.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import helmet from 'helmet';
import { HttpError } from './errors.js';

/**
 * The page's policy. Vite builds it into same-origin module scripts and a stylesheet, with no
 * inline script or style. The wasm backend compiles WebAssembly ('wasm-unsafe-eval'); tfjs
 * and ONNX Runtime Web fetch their .wasm files and the page its /api data from the same origin. Previews and the
 * gallery show blob: URLs (and the icon is a data: URL); a webcam preview will need blob:
 * media. The page is never framed.
 */
export const CSP_DIRECTIVES = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'", "'wasm-unsafe-eval'"],
  scriptSrcAttr: ["'none'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:', 'blob:'],
  mediaSrc: ["'self'", 'blob:'],
  // A backbone chosen in the page by URL is fetched from its server: any https:// one (the
  // Hugging Face hub redirects to its CDN hosts), or a server on this machine over plain http.
  connectSrc: ["'self'", 'https:', 'http://127.0.0.1:*', 'http://localhost:*'],
  workerSrc: ["'self'", 'blob:'],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  baseUri: ["'none'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  // helmet adds upgrade-insecure-requests by default: that would send the page's requests to
  // https:// on a server reached over plain http (e.g. bound to 0.0.0.0 and opened by address).
  upgradeInsecureRequests: null,
};

/** 127.0.0.0/8, ::1 and localhost: an address only this machine reaches. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Whether a Host header names this machine by a loopback name: localhost, 127.0.0.1 or [::1], any port. */
export function isLoopbackHostHeader(value: string): boolean {
  const m = /^(\[[^\]]*\]|[^:]*)(:\d{1,5})?$/.exec(value.trim().toLowerCase());
  return m !== null && LOOPBACK_NAMES.has(m[1]);
}

export interface SecurityOptions {
  /** The address the server listens on: a loopback one turns the Host check on. */
  host: string;
  /** Required as `Authorization: Bearer <token>` on the API when set. */
  token?: string;
}

/** The API: routes under /api. The page and its files are for anyone who reaches the server. */
const isApi = (url: string) => url === '/api' || url.startsWith('/api/') || url.startsWith('/api?');

/** /api/health stays open to monitors that hold no token, and says nothing of the model's data. */
const isHealth = (url: string) => url.split('?')[0] === '/api/health';

/** A Host header or an origin's host in one form: lower case, default port dropped. */
function normalHost(value: string): string | undefined {
  try {
    return new URL(`http://${value.trim()}`).host;
  } catch {
    return undefined;
  }
}

/**
 * Why a request is cross-site, or undefined when it is not. Sec-Fetch-Site 'cross-site' is
 * refused, and so is 'same-site' (another origin of the same site, e.g. another port) unless
 * its Origin is this server's; an Origin (including 'null': sandboxed frames, files) that is not
 * this server's Host is refused too. Same-origin requests, navigations typed in the address
 * bar ('none') and non-browser clients pass.
 */
export function crossSiteReason(req: Pick<FastifyRequest, 'headers'>): string | undefined {
  const site = req.headers['sec-fetch-site'];
  const origin = req.headers.origin;
  const host = req.headers.host === undefined ? undefined : normalHost(req.headers.host);
  let originHost: string | undefined;
  if (origin !== undefined) {
    try {
      const u = new URL(origin);
      originHost = u.protocol === 'http:' || u.protocol === 'https:' ? u.host : undefined;
    } catch {
      originHost = undefined;
    }
  }
  const sameOrigin = originHost !== undefined && host !== undefined && originHost === host;
  if (site === 'cross-site') return 'Sec-Fetch-Site: cross-site';
  if (site === 'same-site' && !sameOrigin) return 'Sec-Fetch-Site: same-site, from another origin';
  if (origin !== undefined && !sameOrigin) return `Origin '${origin.slice(0, 100)}' is not this server's`;
  return undefined;
}

/** Whether `got` is `Bearer <token>`, compared in constant time (digests of equal length). */
export function bearerMatches(got: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(got ?? '');
  const digest = (s: string) => createHash('sha256').update(s).digest();
  // Compared even when there is no token in the header, so the answer takes the same time.
  return timingSafeEqual(digest(m?.[1] ?? ''), digest(token)) && m !== null;
}

/**
 * Registers the security headers (first, so that every answer has them, refusals included),
 * the Host check when `host` is a loopback address, the cross-site check and, with a token,
 * the token check.
 */
export function registerSecurity(app: FastifyInstance, opts: SecurityOptions): void {
  const { host, token } = opts;
  const headers = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
    // helmet's defaults besides: X-Content-Type-Options nosniff, Cross-Origin-Opener-Policy and
    // -Resource-Policy same-origin, Origin-Agent-Cluster, X-DNS-Prefetch-Control off, ...
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // The server speaks plain http; HSTS is for whoever puts https in front of it.
    strictTransportSecurity: false,
  });
  app.addHook('onRequest', (req, reply, done) => headers(req.raw, reply.raw, () => done()));
  if (isLoopbackAddress(host)) {
    app.addHook('onRequest', (req, _reply, done) => {
      const value = req.headers.host;
      // HTTP/1.0 clients may send no Host; browsers, which DNS rebinding needs, always do.
      if (value === undefined || isLoopbackHostHeader(value)) return done();
      done(
        new HttpError(
          421,
          `Host '${value.slice(0, 100)}' is not served here: this server listens on ${host} and answers only to localhost, 127.0.0.1 and [::1] (protection against DNS rebinding); start it with --host 0.0.0.0 to serve other names`,
        ),
      );
    });
  }
  app.addHook('onRequest', (req, _reply, done) => {
    if (!isApi(req.url) || (isHealth(req.url) && req.method === 'GET')) return done();
    const reason = crossSiteReason(req);
    if (reason === undefined) return done();
    done(
      new HttpError(
        403,
        `cross-site request refused (${reason}): the API answers only this server's own page and clients that are no browser`,
      ),
    );
  });
  if (token === undefined) return;
  if (token === '') throw new Error('the token must not be empty');
  app.addHook('onRequest', (req, _reply, done) => {
    if (!isApi(req.url) || isHealth(req.url) || bearerMatches(req.headers.authorization, token))
      return done();
    done(
      new HttpError(
        401,
        "this server requires a token: send the header 'Authorization: Bearer <token>' (the page takes it from #token=<token> at the end of its address)",
        { 'www-authenticate': 'Bearer' },
      ),
    );
  });
}
