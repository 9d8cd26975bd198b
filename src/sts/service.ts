import type { QueryService } from "../aws/service.ts";
import type { Store } from "../store/store.ts";

/**
 * AWS STS, only `GetCallerIdentity`: the Query-protocol way to ask
 * "whose credentials are these?" (`aws sts get-caller-identity`).
 */
export function stsService(store: Store): QueryService {
  return {
    protocol: "query",
    signingName: "sts",
    apiVersion: "2011-06-15",
    xmlNamespace: "https://sts.amazonaws.com/doc/2011-06-15/",
    operations: {
      async GetCallerIdentity(_input, ctx) {
        const key = await store.read((tx) =>
          tx.get<{ user_name: string }>(
            "SELECT user_name FROM access_keys WHERE access_key_id = ?",
            ctx.identity.accessKeyId,
          ),
        );
        const userName = key?.user_name ?? "unknown";
        return {
          UserId: ctx.identity.accessKeyId,
          Account: ctx.accountId,
          Arn: `arn:aws:iam::${ctx.accountId}:user/${userName}`,
        };
      },
    },
  };
}
