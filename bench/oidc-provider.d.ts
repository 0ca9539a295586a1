// node-oidc-provider ships no type declarations; the peer benchmark needs only its constructor and listen.
declare module 'oidc-provider' {
  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    listen(port: number, host: string, listening?: () => void): unknown;
  }
}
