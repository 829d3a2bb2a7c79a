/**
 * Resume tokens: getting the same player back after a dropped connection.
 *
 * Every `welcome` carries a fresh `resume_token`. Reconnecting within the
 * server's grace period (10 s by default) with `?resume=TOKEN` gives back
 * the same player (id, colour, position, room); each token works once, so
 * only the newest one is kept. What the page does after a close depends on
 * the close code (see `afterClose`), and how it closes tells the server
 * whether it means to come back (see `closeFor`).
 *
 * Pure module: no DOM. Storage is passed in (the page gives it
 * `sessionStorage`: per tab, survives a reload, so a reload within the
 * grace period keeps the dot).
 */

/** "I am leaving": the server removes the player at once and its token dies. */
export const CLOSE_LEAVING = 1000;
/** "I will be back": the server keeps the player for the grace period. */
export const CLOSE_RECONNECTING = 4000;
/** The server refused our `?resume=` token (the `error` before it says why). */
export const CLOSE_RESUME_REFUSED = 4001;
/** Our player was resumed on another connection (another tab or device). */
export const CLOSE_TAKEN_OVER = 4002;

/** `error` codes of a refused resume: forget the token, join as a new player. */
export const RESUME_REFUSALS = Object.freeze(['resume_invalid', 'resume_used', 'resume_expired', 'resume_wrong_room']);

/** A token as the server issues it: 32 lowercase hex digits. */
const TOKEN_RE = /^[0-9a-f]{32}$/;

export function isValidToken(token) {
  return typeof token === 'string' && TOKEN_RE.test(token);
}

/**
 * What to do once a socket has closed:
 * - `'stop'`: our player lives on another connection now (close 4002).
 *   Reconnecting by ourselves would take it back from there, which would
 *   take it back again (ping-pong), so wait for the user.
 * - `'fresh'`: the server refused the token we sent (close 4001, or a
 *   resume `error` before the close): forget it and connect again at once
 *   as a new player, without a backoff wait.
 * - `'retry'`: anything else: reconnect through the backoff, with the
 *   token if we still have one.
 * @param {{code: number, errorCode?: string|null, sentToken?: boolean}} closed
 *   the close code, the code of the server's `error` on this connection (if
 *   any), and whether this connection offered a token
 */
export function afterClose({ code, errorCode = null, sentToken = false }) {
  if (code === CLOSE_TAKEN_OVER) return 'stop';
  // Without a token sent there is nothing to forget: never loop on 'fresh'.
  if (sentToken && (code === CLOSE_RESUME_REFUSED || RESUME_REFUSALS.includes(errorCode))) return 'fresh';
  return 'retry';
}

/**
 * The close code (and reason) for a socket we close ourselves. Coming back
 * (`'reconnect'`: watchdog, bad frame) with a token to come back with:
 * 4000, so the server keeps the player. Leaving (`'leave'`: switching
 * rooms), or nothing to resume (no token, no welcome yet): 1000, so the
 * server removes the player at once rather than keep a dot nobody can
 * take back.
 * @param {'reconnect'|'leave'} intent
 * @param {boolean} hasToken  the connection's welcome carried a token
 */
export function closeFor(intent, hasToken) {
  return intent === 'reconnect' && hasToken
    ? { code: CLOSE_RECONNECTING, reason: 'reconnecting' }
    : { code: CLOSE_LEAVING, reason: 'bye' };
}

/**
 * First `seq` base on a connection: a resumed player goes on counting above
 * both what we sent and what the server accepted (`last_seq`), since the
 * server acknowledges by the highest seq; a new player starts at 0.
 */
export function seqBase({ resumed, ownSeq = 0, lastSeq = 0 }) {
  return resumed ? Math.max(ownSeq, lastSeq) : 0;
}

/**
 * The newest token per room (`''` = the server's default room), in memory
 * and mirrored to `storage` (a Web Storage, or null). A storage that throws
 * (disabled, full, private mode) is ignored: the memory copy still resumes
 * dropped connections, only a reload starts over.
 */
export class ResumeTokens {
  constructor(storage = null, prefix = 'playfield.resume:') {
    this.storage = storage;
    this.prefix = prefix;
    this.memory = new Map();
  }

  key(room) {
    return this.prefix + (room ?? '');
  }

  /** The token to resume with in `room`, or null. */
  get(room) {
    const key = this.key(room);
    let token = this.memory.get(key);
    if (token === undefined) {
      try {
        token = this.storage?.getItem(key) ?? null;
      } catch {
        token = null;
      }
    }
    return isValidToken(token) ? token : null;
  }

  /** Keep the newest token for `room` (an invalid one forgets instead). */
  set(room, token) {
    if (!isValidToken(token)) return this.forget(room);
    const key = this.key(room);
    this.memory.set(key, token);
    try {
      this.storage?.setItem(key, token);
    } catch { /* memory only */ }
  }

  forget(room) {
    const key = this.key(room);
    this.memory.set(key, null); // also hides a copy storage failed to remove
    try {
      this.storage?.removeItem(key);
    } catch { /* memory only */ }
  }
}
