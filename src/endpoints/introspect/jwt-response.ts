import { epochSeconds } from '../../clock.ts';
import type { Context } from '../../context.ts';
import { newJti } from '../../tokens/access-token.ts';
import type { IntrospectionAnswer } from './introspect.ts';

/** RFC 9701 §5: the media type of a signed introspection response, also its `typ`. */
export const introspectionJwtType = 'application/token-introspection+jwt';

/** RFC 9701 §5: a JWT whose `token_introspection` claim holds the answer, addressed to the caller. */
export function signIntrospectionResponse(ctx: Context, callerId: string, answer: IntrospectionAnswer): Promise<string> {
  return ctx.keys.signJwt(
    { typ: 'token-introspection+jwt' },
    {
      iss: ctx.config.issuer,
      aud: callerId,
      iat: epochSeconds(ctx.clock),
      jti: newJti(),
      token_introspection: answer,
    },
  );
}
