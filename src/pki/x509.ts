/**
 * @peculiar/x509 through one door: it resolves its algorithms with tsyringe, which needs a Reflect
 * metadata polyfill loaded first (the library's README); ESM evaluates this import before the next.
 */
import 'reflect-metadata';
export * from '@peculiar/x509';
