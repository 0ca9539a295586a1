import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { deviceCookie, deviceCookieKey, newDeviceId, presentedDeviceId } from '../../src/identity/device-cookie.ts';

const key = deviceCookieKey(randomBytes(32));
const issuer = (url: string) => ({ config: { issuer: url }, identity: { deviceCookieKey: key } }) as Parameters<typeof deviceCookie>[0];

/** The name=value pair of a Set-Cookie line. */
const pair = (setCookie: string) => setCookie.split(';')[0]!;

describe('the device cookie', () => {
  test('holds a random 128-bit device id and its MAC, nothing else; lives 400 days, HttpOnly, Secure on https, SameSite=Lax, on the issuer path, prefixed on https', () => {
    const id = newDeviceId();
    assert.equal(Buffer.from(id, 'base64url').length, 16);
    assert.notEqual(newDeviceId(), id);
    const line = deviceCookie(issuer('https://login.example.com/idp'), id);
    assert.match(line, new RegExp(`^__Secure-clearance_device=${id}\\.[A-Za-z0-9_-]{43}; Path=/idp; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000$`));
    assert.match(deviceCookie(issuer('https://login.example.com'), id), new RegExp(`^__Host-clearance_device=${id}\\.[A-Za-z0-9_-]{43}; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=34560000$`));
    // On a development http issuer, as every Clearance cookie, it cannot be Secure, nor prefixed.
    assert.match(deviceCookie(issuer('http://localhost:9000'), id), /^clearance_device=/);
    assert.doesNotMatch(deviceCookie(issuer('http://localhost:9000'), id), /Secure/);
  });

  test('on https only the prefixed cookie names a device: one planted under the bare name (a sibling subdomain, an http page) is ignored, MAC and all', () => {
    const id = newDeviceId();
    const https = 'https://login.example.com';
    const cookie = pair(deviceCookie(issuer(https), id));
    assert.equal(presentedDeviceId(key, cookie, https), id);
    const planted = cookie.replace(/^__Host-/, '');
    assert.equal(presentedDeviceId(key, planted, https), undefined);
    assert.equal(presentedDeviceId(key, `${planted}; ${cookie}`, https), id, 'the prefixed one beside it still counts, alone');
    assert.equal(presentedDeviceId(key, cookie.replace(/^__Host-/, '__Secure-'), https), undefined, 'the path form on a root issuer');
  });

  test('is recognised when its MAC verifies, and ignored when it was tampered with, made up, or made with another key', () => {
    const id = newDeviceId();
    const https = 'https://login.example.com';
    const presented = (header: string | undefined, withKey = key) => presentedDeviceId(withKey, header, https);
    const cookie = pair(deviceCookie(issuer(https), id));
    assert.equal(presented(`other=1; ${cookie}`), id);
    const [name, value] = [cookie.slice(0, cookie.indexOf('=')), cookie.slice(cookie.indexOf('=') + 1)];
    const [presentedId, mac] = value.split('.') as [string, string];
    const otherId = newDeviceId();
    assert.equal(presented(`${name}=${otherId}.${mac}`), undefined, 'another id under this MAC');
    assert.equal(presented(`${name}=${presentedId}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`), undefined, 'a changed MAC');
    // The MAC's last character has two spare bits: another character decoding to the same bytes is refused too.
    const last = mac.at(-1)!;
    const twin = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(last) ^ 1)]!;
    assert.equal(presented(`${name}=${presentedId}.${mac.slice(0, -1)}${twin}`), undefined, 'a MAC with other spare bits');
    assert.equal(presented(`${name}=${presentedId}`), undefined, 'no MAC');
    assert.equal(presented(cookie, deviceCookieKey(randomBytes(32))), undefined, 'another server’s key');
    assert.equal(presented(undefined), undefined);
    assert.equal(presented('__Host-clearance_device=../../etc'), undefined);
  });

  test('presented twice with two valid ids names no device; the same id twice names it', () => {
    const a = pair(deviceCookie(issuer('https://login.example.com'), newDeviceId()));
    const b = pair(deviceCookie(issuer('https://login.example.com'), newDeviceId()));
    assert.equal(presentedDeviceId(key, `${a}; ${b}`, 'https://login.example.com'), undefined);
    assert.ok(presentedDeviceId(key, `${a}; ${a}`, 'https://login.example.com'));
  });
});
