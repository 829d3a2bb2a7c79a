import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SUBPROTOCOL, SUBPROTOCOL_BIN, SUBPROTOCOL_JSON, PROTOCOL_VERSION, offeredProtocols, socketUrl, isValidRoom,
  encodeInput, encodePing, decodeServerMessage, ProtocolError,
} from '../js/protocol.js';

test('subprotocol names', () => {
  assert.equal(SUBPROTOCOL, 'playfield.v1.json');
  assert.equal(SUBPROTOCOL_JSON, 'playfield.v1.json');
  assert.equal(SUBPROTOCOL_BIN, 'playfield.v1.bin');
});

test('binary is offered first, JSON as the fallback; ?proto= picks one', () => {
  assert.deepEqual(offeredProtocols(''), ['playfield.v1.bin', 'playfield.v1.json']);
  assert.deepEqual(offeredProtocols('?room=a'), ['playfield.v1.bin', 'playfield.v1.json']);
  assert.deepEqual(offeredProtocols('?proto=json&room=a'), ['playfield.v1.json']);
  assert.deepEqual(offeredProtocols('?room=a&proto=bin'), ['playfield.v1.bin']);
  assert.deepEqual(offeredProtocols('?proto=xml'), ['playfield.v1.bin', 'playfield.v1.json'], 'unknown values: the default');
});

test('socket URL follows the page origin and scheme', () => {
  assert.equal(socketUrl({ protocol: 'http:', host: '127.0.0.1:4321' }, 'lobby'), 'ws://127.0.0.1:4321/ws?room=lobby');
  assert.equal(socketUrl({ protocol: 'https:', host: 'play.example' }, 'a-b_1'), 'wss://play.example/ws?room=a-b_1');
  assert.equal(socketUrl({ protocol: 'http:', host: 'h:1' }, null), 'ws://h:1/ws');
});

test('socket URL carries the resume token next to the room', () => {
  const token = '0123456789abcdef0123456789abcdef';
  const loc = { protocol: 'http:', host: '127.0.0.1:4321' };
  assert.equal(socketUrl(loc, 'lobby', token), `ws://127.0.0.1:4321/ws?room=lobby&resume=${token}`);
  assert.equal(socketUrl(loc, null, token), `ws://127.0.0.1:4321/ws?resume=${token}`, 'default room: the token alone');
  assert.equal(socketUrl(loc, 'lobby', null), 'ws://127.0.0.1:4321/ws?room=lobby');
  assert.equal(socketUrl(loc, 'lobby', ''), 'ws://127.0.0.1:4321/ws?room=lobby');
  const url = new URL(socketUrl({ protocol: 'https:', host: 'play.example' }, 'a-b_1', token));
  assert.equal(url.protocol, 'wss:');
  assert.equal(url.searchParams.get('room'), 'a-b_1');
  assert.equal(url.searchParams.get('resume'), token);
});

test('room names: 1-32 of A-Z a-z 0-9 _ -', () => {
  for (const ok of ['a', 'lobby', 'Room_1-x', 'x'.repeat(32)]) assert.ok(isValidRoom(ok), ok);
  for (const bad of ['', 'x'.repeat(33), 'has space', 'é', 'a/b', '?', null, 3]) assert.ok(!isValidRoom(bad), String(bad));
});

test('encodes input and ping exactly as the protocol shows', () => {
  assert.deepEqual(JSON.parse(encodeInput(56, { x: 1, y: -1 })), { type: 'input', seq: 56, input: { x: 1, y: -1 } });
  assert.deepEqual(JSON.parse(encodePing(3)), { type: 'ping', id: 3 });
});

test('decodes welcome', () => {
  const m = decodeServerMessage(JSON.stringify({
    type: 'welcome', protocol: 1, id: 7, room: 'lobby', tick_rate: 20, server_time: 1764099123456.0, input_buffer: 4,
    world: { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 },
  }));
  assert.equal(m.type, 'welcome');
  assert.equal(m.id, 7);
  assert.equal(m.room, 'lobby');
  assert.equal(m.tickRate, 20);
  assert.deepEqual(m.world, { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 });
  assert.equal(m.schema, null, 'no schema sent');
  assert.equal(m.viewSize, null, 'no view_size sent');
  assert.equal(m.resumeToken, null, 'no resume_token sent: this server does not resume');
  assert.equal(m.resumed, false);
  assert.equal(m.lastSeq, 0);
});

test('welcome carries the resume token, and on a resumed connection the last seq', () => {
  const token = '0123456789abcdef0123456789abcdef';
  const base = {
    type: 'welcome', protocol: 1, id: 7, room: 'lobby', tick_rate: 20,
    world: { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 },
  };
  const fresh = decodeServerMessage(JSON.stringify({ ...base, resume_token: token, resumed: false }));
  assert.equal(fresh.resumeToken, token);
  assert.equal(fresh.resumed, false);
  assert.equal(fresh.lastSeq, 0);
  const back = decodeServerMessage(JSON.stringify({ ...base, resume_token: token, resumed: true, last_seq: 118 }));
  assert.equal(back.resumed, true);
  assert.equal(back.lastSeq, 118);
  // Odd values are not fatal: no token (no resume next time), seq from ours.
  for (const bad of [token.toUpperCase(), token.slice(1), 42, null]) {
    assert.equal(decodeServerMessage(JSON.stringify({ ...base, resume_token: bad })).resumeToken, null, String(bad));
  }
  for (const bad of [-1, 1.5, '118', null]) {
    assert.equal(decodeServerMessage(JSON.stringify({ ...base, resumed: true, last_seq: bad })).lastSeq, 0, String(bad));
  }
  assert.equal(decodeServerMessage(JSON.stringify({ ...base, resumed: 'yes' })).resumed, false);
  assert.equal(decodeServerMessage(JSON.stringify({ ...base, resumed: false, last_seq: 9 })).lastSeq, 0, 'last_seq counts only on a resume');
});

test('welcome carries the schema (binary snapshots need it) and view_size', () => {
  const base = {
    type: 'welcome', protocol: 1, id: 7, room: 'lobby', tick_rate: 20,
    world: { width: 3000, height: 3000, speed: 200, min: 10, max: 2990, radius: 10 },
    schema: { collection: 'players', fields: [{ name: 'color', kind: 'str' }] },
    view_size: 500,
  };
  const m = decodeServerMessage(JSON.stringify(base));
  assert.deepEqual(m.schema, { collection: 'players', fields: [{ name: 'color', kind: 'str' }] });
  assert.equal(m.viewSize, 500);
  for (const [change, reason] of [
    [(w) => { w.schema.fields[0].kind = 'u8'; }, /welcome\.schema\.fields\[0\]/],
    [(w) => { w.schema.fields = 'color'; }, /welcome\.schema/],
    [(w) => { w.view_size = 0; }, /welcome\.view_size/],
    [(w) => { w.view_size = '500'; }, /welcome\.view_size/],
  ]) {
    const w = structuredClone(base);
    change(w);
    assert.throws(() => decodeServerMessage(JSON.stringify(w)), (e) => e instanceof ProtocolError && reason.test(e.message), reason.source);
  }
});

test('a welcome of another protocol version, or without what prediction needs, is rejected with the reason', () => {
  const good = {
    type: 'welcome', protocol: 1, id: 7, room: 'lobby', tick_rate: 20,
    world: { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 },
  };
  const bad = (change, reason) => {
    const w = structuredClone(good);
    change(w);
    assert.throws(() => decodeServerMessage(JSON.stringify(w)), (e) => e instanceof ProtocolError && reason.test(e.message), reason.source);
  };
  assert.equal(PROTOCOL_VERSION, 1);
  bad((w) => { w.protocol = 2; }, /protocol version 2 \(this page speaks 1\)/);
  bad((w) => { delete w.protocol; }, /protocol version null/);
  bad((w) => { w.protocol = '1'; }, /protocol version "1"/);
  bad((w) => { delete w.world.speed; }, /welcome\.world\.speed/);
  bad((w) => { w.world.max = 'x'; }, /welcome\.world\.max/);
  bad((w) => { delete w.world; }, /welcome\.world/);
  bad((w) => { w.tick_rate = 0; }, /welcome\.tick_rate/);
  bad((w) => { w.id = null; }, /welcome\.id/);
  // Optional and informational fields may be missing.
  const w = structuredClone(good);
  delete w.world.radius;
  delete w.room;
  assert.deepEqual(decodeServerMessage(JSON.stringify(w)), {
    type: 'welcome', id: 7, room: '', tickRate: 20, world: { width: 500, height: 500, speed: 200, min: 10, max: 490, radius: 10 }, schema: null, viewSize: null,
    resumeToken: null, resumed: false, lastSeq: 0,
  });
});

test('decodes snapshot, pong and error', () => {
  const s = decodeServerMessage('{"type":"snapshot","tick":1234,"time":1764099123500.0,"ack":55,"state":{"players":[{"id":7,"x":120.0,"y":340.0,"color":"#1a2b3c"}]}}');
  assert.deepEqual(s, { type: 'snapshot', tick: 1234, ack: 55, players: [{ id: 7, x: 120, y: 340, color: '#1a2b3c' }] });
  assert.deepEqual(decodeServerMessage('{"type":"pong","id":3,"server_time":5.0}'), { type: 'pong', id: 3 });
  assert.deepEqual(decodeServerMessage('{"type":"error","code":"room_full","message":"full"}'), { type: 'error', code: 'room_full', message: 'full' });
  // A game whose schema names its list otherwise.
  const t = decodeServerMessage('{"type":"snapshot","tick":2,"ack":0,"state":{"things":[{"id":1,"x":1,"y":2}]}}', 'things');
  assert.deepEqual(t.players, [{ id: 1, x: 1, y: 2, color: '#888' }]);
});

test('unknown types are tolerated, malformed frames are rejected', () => {
  assert.equal(decodeServerMessage('{"type":"future_thing","x":1}').type, 'unknown');
  assert.throws(() => decodeServerMessage('not json'), ProtocolError);
  assert.throws(() => decodeServerMessage('{"no":"type"}'), ProtocolError);
  assert.throws(() => decodeServerMessage('{"type":"snapshot","tick":1,"time":2}'), ProtocolError);
  assert.throws(() => decodeServerMessage('{"type":"snapshot","tick":1,"time":2,"state":{"players":[{"id":1,"x":"a","y":2}]}}'), ProtocolError);
  assert.throws(() => decodeServerMessage('{"type":"welcome","protocol":1,"id":1,"tick_rate":0,"world":{}}'), ProtocolError);
});
