/**
 * The error hatch: raises a test error inside the hatch's own request, through the path app errors
 * take (src/errors.ts: hatch:error, the errors counter, stderr with the request ID, the request's
 * record), and answers 500.
 */
import { storage } from '../context';
import { reportError } from '../errors';
import { jsonPage } from './pages';
import { cleanMsg, type Reply } from './reply';

export function errorHatch(query: URLSearchParams): Reply {
  const msg = cleanMsg(query.get('msg'), 'test error from the error hatch');
  const err = new Error(msg);
  err.name = 'HatchTestError';
  reportError('hatch_test', err);
  const json = {
    error: `${err.name}: ${msg}`,
    requestId: storage.getStore()?.id,
    reported: "hatch:error (errors counter kind hatch_test), stderr, this request's record",
  };
  return { status: 500, json, html: jsonPage('error hatch: test error raised', json) };
}
