/** The error type the routes throw, and the wording shared by the routes and the error handler. */

/**
 * An error with an HTTP status, answered as JSON by the error handler (app.ts) with its message
 * kept, whatever the status (a 503 says why the server is busy). `headers` go on the answer,
 * e.g. Retry-After.
 */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * The client closed the connection before its answer was ready: the work for it stops. Nobody
 * reads the answer; the status (nginx's "client closed request") shows in the server's log.
 */
export class ClientGoneError extends HttpError {
  constructor() {
    super(499, 'the client closed the connection before the answer was ready');
  }
}

/** A request over the whole-request cap (maxRequestBytes, in MB). */
export const requestTooLarge = (limitMb: number) =>
  new HttpError(413, `request too large: the limit is ${limitMb} MB per request (all images together)`);

export const HOW_TO_SEND =
  "send an image as the multipart form field 'image' or as the raw request body with Content-Type image/* or application/octet-stream";
