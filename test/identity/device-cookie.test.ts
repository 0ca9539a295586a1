import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { deviceCookie, deviceCookieKey, deviceCookieName, newDeviceId, presentedDeviceId } from '../../src/identity/device-cookie.ts';

const key = deviceCookieKey(randomBytes(32));
const issuer = (url: string) => ({ config: { issuer: url }, identity: { deviceCookieKey: key } }) as Parameters<typeof deviceCookie>[0];

/** The name=value pair of a Set-Cookie line. */
const pair = (setCookie: string) => setCookie.split(';')[0]!;

describe('the device cookie', () => {
  test('holds a random 128-bit device id and its MAC, nothing else; lives 400 days, HttpOnly, Secure on https, SameSite=Lax, on the issuer path', () => {
    const id = newDeviceId();
    assert.equal(Buffer.from(id, 'base64url').length, 16);
    assert.notEqual(newDeviceId(), id);
    const line = deviceCookie(issuer('https://login.example.com/idp'), id);
    assert.match(line, new RegExp(`^${deviceCookieName}=${id}\\.[A-Za-z0-9_-]{43}; Path=/idp; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000$`));
    // On a development http issuer, as every Clearance cookie, it cannot be Secure.
    assert.doesNotMatch(deviceCookie(issuer('http://localhost:9000'), id), /Secure/);
  });

  test('is recognised when its MAC verifies, and ignored when it was tampered with, made up, or made with another key', () => {
    const id = newDeviceId();
    const cookie = pair(deviceCookie(issuer('https://login.example.com'), id));
    assert.equal(presentedDeviceId(key, `other=1; ${cookie}`), id);
    const [name, value] = [cookie.slice(0, cookie.indexOf('=')), cookie.slice(cookie.indexOf('=') + 1)];
    const [presentedId, mac] = value.split('.') as [string, string];
    const otherId = newDeviceId();
    assert.equal(presentedDeviceId(key, `${name}=${otherId}.${mac}`), undefined, 'another id under this MAC');
    assert.equal(presentedDeviceId(key, `${name}=${presentedId}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`), undefined, 'a changed MAC');
    // The MAC's last character has two spare bits: another character decoding to the same bytes is refused too.
    const last = mac.at(-1)!;
    const twin = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(last) ^ 1)]!;
    assert.equal(presentedDeviceId(key, `${name}=${presentedId}.${mac.slice(0, -1)}${twin}`), undefined, 'a MAC with other spare bits');
    assert.equal(presentedDeviceId(key, `${name}=${presentedId}`), undefined, 'no MAC');
    assert.equal(presentedDeviceId(deviceCookieKey(randomBytes(32)), cookie), undefined, 'another server’s key');
    assert.equal(presentedDeviceId(key, undefined), undefined);
    assert.equal(presentedDeviceId(key, 'clearance_device=../../etc'), undefined);
  });

  test('presented twice with two valid ids names no device; the same id twice names it', () => {
    const a = pair(deviceCookie(issuer('https://login.example.com'), newDeviceId()));
    const b = pair(deviceCookie(issuer('https://login.example.com'), newDeviceId()));
    assert.equal(presentedDeviceId(key, `${a}; ${b}`), undefined);
    assert.ok(presentedDeviceId(key, `${a}; ${a}`));
  });
});
