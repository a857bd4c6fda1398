/**
 * Security headers on every answer (helmet, with a Content-Security-Policy written for the page
 * web/ builds) and, on a server bound to a loopback address, a check of the Host header against
 * DNS rebinding: a page on evil.example whose name is made to resolve to 127.0.0.1 would
 * otherwise reach this server as same-origin.
 *
 * helmet itself rather than @fastify/helmet: the plugin builds helmet's middleware anew on every
 * request (its onRequest hook calls helmet(options) each time, plus an async hook and a reply
 * decorator). Under load that garbage outlived the young generation while requests waited
 * for an inference slot, and the heap grew by about a megabyte a second until the next full GC
 * (bench/serve-load.ts); the same middleware built once, as here, costs nothing measurable.
 */
import type { FastifyInstance } from 'fastify';
import helmet from 'helmet';
import { HttpError } from './errors.js';

/**
 * The page's policy. Vite builds it into same-origin module scripts and a stylesheet, with no
 * inline script or style. The wasm backend compiles WebAssembly ('wasm-unsafe-eval'); tfjs
 * fetches its .wasm files and the page its /api data from the same origin. Previews and the
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
  connectSrc: ["'self'"],
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

/**
 * Registers the security headers (first, so that every answer has them, refusals included) and,
 * when `host` is a loopback address, the Host check.
 */
export function registerSecurity(app: FastifyInstance, host: string): void {
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
  if (!isLoopbackAddress(host)) return;
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
