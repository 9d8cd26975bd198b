import type { AccessKeys } from "../auth/access-keys.ts";
import type { QueryService } from "../aws/service.ts";

/**
 * AWS STS, only `GetCallerIdentity`: the Query-protocol way to ask
 * "whose credentials are these?" (`aws sts get-caller-identity`).
 */
export function stsService(keys: AccessKeys): QueryService {
  return {
    protocol: "query",
    signingName: "sts",
    apiVersion: "2011-06-15",
    xmlNamespace: "https://sts.amazonaws.com/doc/2011-06-15/",
    operations: {
      async GetCallerIdentity(_input, ctx) {
        const userName = keys.userOf(ctx.identity.accessKeyId) ?? "unknown";
        return {
          UserId: ctx.identity.accessKeyId,
          Account: ctx.accountId,
          Arn: `arn:aws:iam::${ctx.accountId}:user/${userName}`,
        };
      },
    },
  };
}
