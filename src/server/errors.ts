/** The error type the routes throw, and the wording shared by the routes and the error handler. */

/** An error with an HTTP status, answered as JSON by the error handler (app.ts). */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

export const HOW_TO_SEND =
  "send an image as the multipart form field 'image' or as the raw request body with Content-Type image/* or application/octet-stream";
