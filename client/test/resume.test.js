import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLOSE_LEAVING, CLOSE_RECONNECTING, CLOSE_RESUME_REFUSED, CLOSE_TAKEN_OVER, RESUME_REFUSALS,
  isValidToken, afterClose, closeFor, seqBase, ResumeTokens,
} from '../js/resume.js';

const T1 = '0123456789abcdef0123456789abcdef';
const T2 = 'fedcba9876543210fedcba9876543210';

/** A Web Storage stand-in: a Map behind getItem/setItem/removeItem. */
class FakeStorage {
  constructor() { this.map = new Map(); }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
}

/** Storage that throws on everything (disabled, private mode, quota). */
const BROKEN = {
  getItem() { throw new Error('SecurityError'); },
  setItem() { throw new Error('QuotaExceededError'); },
  removeItem() { throw new Error('SecurityError'); },
};

test('close codes of the protocol', () => {
  assert.equal(CLOSE_LEAVING, 1000);
  assert.equal(CLOSE_RECONNECTING, 4000);
  assert.equal(CLOSE_RESUME_REFUSED, 4001);
  assert.equal(CLOSE_TAKEN_OVER, 4002);
  assert.deepEqual([...RESUME_REFUSALS].sort(), ['resume_expired', 'resume_invalid', 'resume_used', 'resume_wrong_room']);
});

test('tokens are 32 lowercase hex digits', () => {
  assert.ok(isValidToken(T1));
  for (const bad of ['', T1.slice(1), `${T1}0`, T1.toUpperCase(), `${T1.slice(1)}g`, ` ${T1.slice(1)}`, null, undefined, 42]) {
    assert.ok(!isValidToken(bad), String(bad));
  }
});

test('after a close: 4002 stops, a refused token starts fresh, anything else retries', () => {
  // Taken over: never reconnect by ourselves (with or without a token).
  assert.equal(afterClose({ code: 4002, sentToken: true }), 'stop');
  assert.equal(afterClose({ code: 4002, sentToken: false }), 'stop');
  // Refused token: by close code, or by the error that came before the close.
  assert.equal(afterClose({ code: 4001, errorCode: 'resume_invalid', sentToken: true }), 'fresh');
  assert.equal(afterClose({ code: 4001, errorCode: 'unsupported_protocol', sentToken: true }), 'fresh');
  assert.equal(afterClose({ code: 4001, sentToken: true }), 'fresh', 'the error message may be lost');
  for (const errorCode of RESUME_REFUSALS) {
    assert.equal(afterClose({ code: 1006, errorCode, sentToken: true }), 'fresh', errorCode);
  }
  // No token sent: nothing to forget, so no immediate reconnect loop.
  assert.equal(afterClose({ code: 4001, errorCode: 'resume_invalid', sentToken: false }), 'retry');
  // Dropped links, restarts, refusals of other kinds: the backoff, token kept.
  for (const code of [1000, 1001, 1006, 1011, 1013, 4000]) {
    assert.equal(afterClose({ code, sentToken: true }), 'retry', String(code));
  }
  assert.equal(afterClose({ code: 1013, errorCode: 'room_full', sentToken: true }), 'retry');
  assert.equal(afterClose({ code: 1006 }), 'retry');
});

test('we close with 4000 only when we mean to come back and hold a token', () => {
  assert.deepEqual(closeFor('reconnect', true), { code: 4000, reason: 'reconnecting' });
  assert.deepEqual(closeFor('reconnect', false), { code: 1000, reason: 'bye' }, 'nothing to resume: do not leave a ghost');
  assert.deepEqual(closeFor('leave', true), { code: 1000, reason: 'bye' }, 'switching rooms: the player goes at once');
  assert.deepEqual(closeFor('leave', false), { code: 1000, reason: 'bye' });
});

test('input seq goes on above what either side saw after a resume, from 0 for a new player', () => {
  assert.equal(seqBase({ resumed: true, ownSeq: 120, lastSeq: 118 }), 120, 'inputs lost in the drop');
  assert.equal(seqBase({ resumed: true, ownSeq: 0, lastSeq: 118 }), 118, 'after a reload we know nothing');
  assert.equal(seqBase({ resumed: true, ownSeq: 5, lastSeq: 0 }), 5);
  assert.equal(seqBase({ resumed: true }), 0);
  assert.equal(seqBase({ resumed: false, ownSeq: 120, lastSeq: 118 }), 0);
});

test('tokens are kept per room, newest only, and mirrored to storage', () => {
  const storage = new FakeStorage();
  const t = new ResumeTokens(storage);
  assert.equal(t.get('a'), null);
  t.set('a', T1);
  t.set(null, T2); // the server's default room
  assert.equal(t.get('a'), T1);
  assert.equal(t.get(null), T2);
  assert.equal(t.get(''), T2, 'null and "" both mean the default room');
  assert.equal(t.get('b'), null, 'another room never gets this token');
  assert.equal(storage.getItem('playfield.resume:a'), T1);
  assert.equal(storage.getItem('playfield.resume:'), T2);
  t.set('a', T2);
  assert.equal(t.get('a'), T2, 'each token works once: the newest replaces it');
  // A reload: a new page with the same storage finds the token.
  assert.equal(new ResumeTokens(storage).get('a'), T2);
  t.forget('a');
  assert.equal(t.get('a'), null);
  assert.equal(storage.getItem('playfield.resume:a'), null);
  assert.equal(new ResumeTokens(storage).get('a'), null);
  // A welcome without a (valid) token: forget the old one.
  t.set(null, undefined);
  assert.equal(t.get(null), null);
  assert.equal(storage.getItem('playfield.resume:'), null);
});

test('a stored value that is not a token is ignored', () => {
  const storage = new FakeStorage();
  storage.setItem('playfield.resume:a', 'not a token');
  assert.equal(new ResumeTokens(storage).get('a'), null);
});

test('without working storage tokens live in memory', () => {
  for (const storage of [null, BROKEN]) {
    const t = new ResumeTokens(storage);
    assert.equal(t.get('a'), null);
    t.set('a', T1);
    assert.equal(t.get('a'), T1);
    t.forget('a');
    assert.equal(t.get('a'), null);
  }
  // Storage that cannot remove: the memory copy still hides the stale token.
  const sticky = new FakeStorage();
  sticky.setItem('playfield.resume:a', T1);
  sticky.removeItem = () => { throw new Error('SecurityError'); };
  const t = new ResumeTokens(sticky);
  assert.equal(t.get('a'), T1);
  t.forget('a');
  assert.equal(t.get('a'), null);
});
