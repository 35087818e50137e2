/**
 * One outgoing call as both client patches (http/https and undici/fetch) record it, and its
 * publication on `hatch:http.client` when it ends.
 */
import { channels, type HttpClientEvent } from './bus';
import { log } from './log';
import { now } from './clock';

export interface ClientCall {
  start: number;
  requestId: string | undefined;
  method: string;
  host: string;
  /** The response status once headers arrived; `error` until then. */
  status: number | 'error';
}

export function newCall(requestId: string | undefined, method: string, host: string): ClientCall {
  return { start: now(), requestId, method, host: host.replace(/^\[|\]$/g, ''), status: 'error' };
}

/** Publishes the call's timing; `failed` when it ended in an error whatever status came before. */
export function endCall(call: ClientCall, failed: boolean): void {
  try {
    const event: HttpClientEvent = {
      requestId: call.requestId,
      method: call.method,
      host: call.host,
      statusCode: failed ? 'error' : call.status,
      start: call.start,
      duration: now() - call.start,
    };
    channels.httpClient.publish(event);
  } catch (err) {
    log.warnOnce('client-call', `recording an outgoing call failed: ${(err as Error).message}`);
  }
}
