/** RFC 8693 §3: token type identifiers, as `subject_token_type`, `requested_token_type` and `issued_token_type` name them. */
export const tokenTypes = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  refreshToken: 'urn:ietf:params:oauth:token-type:refresh_token',
  idToken: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
} as const;

/** RFC 8693 §2.1 and RFC 7523 §2.1: the grant type identifiers. */
export const tokenExchangeGrantType = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const jwtBearerGrantType = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
