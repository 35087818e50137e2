/**
 * `hatch-agent`: loading it starts the agent (once), and exports the small public API for code
 * that runs outside incoming requests (scripts, queue workers).
 */
import { start } from './register';

start();

export { getRequestId, withRequestId } from './context';
