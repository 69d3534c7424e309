/** Reads a JSON request body with a size bound; every failure is an HttpError. */
import type { IncomingMessage } from 'node:http';
import { parseValue, type Schema } from '../../core/protocol/schema.ts';
import { HttpError } from './http.ts';

export async function readJsonBody<T>(
  req: IncomingMessage,
  schema: Schema<T>,
  maxBytes: number,
): Promise<T> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type))
    throw new HttpError(415, 'unsupported-media-type', 'send the body as application/json');
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > maxBytes)
    throw new HttpError(413, 'too-large', `the body may be at most ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes)
        throw new HttpError(413, 'too-large', `the body may be at most ${maxBytes} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The client hung up (or timed out) mid-body: its problem, not the gateway's.
    throw new HttpError(
      400,
      'incomplete-body',
      'the connection ended before the whole body arrived',
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'malformed-json', 'the body is not valid JSON');
  }
  const parsed = parseValue(schema, json);
  if (!parsed.ok) throw new HttpError(400, 'invalid', parsed.message);
  return parsed.value;
}
