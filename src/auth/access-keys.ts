import { randomBytes } from "node:crypto";
import type { Store, Tx } from "../store/store.ts";
import type { Sealer } from "./sealer.ts";

/**
 * The principal an access key acts as, as STS GetCallerIdentity names it: its IAM user, or the
 * account's root for a key no user holds. ECS records it as who registered a task definition
 * (`registeredBy`) and who created a service (`createdBy`).
 */
export async function principalArn(tx: Tx, accessKeyId: string, accountId: string): Promise<string> {
  const row = await tx.get<{ user_name: string }>(
    "SELECT user_name FROM access_keys WHERE access_key_id = ?",
    accessKeyId,
  );
  return row === undefined
    ? `arn:aws:iam::${accountId}:root`
    : `arn:aws:iam::${accountId}:user/${row.user_name}`;
}

export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
  userName: string;
}

const ADMIN = "admin";
const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** An access key id shaped like AWS's: `AKIA` and 16 upper-case base-32 characters. */
function newAccessKeyId(): string {
  const bytes = randomBytes(16);
  let id = "AKIA";
  for (const byte of bytes) id += ID_ALPHABET[byte % ID_ALPHABET.length];
  return id;
}

/** A 40-character secret, as AWS issues. */
function newSecret(): string {
  return randomBytes(30).toString("base64").replaceAll("+", "/").slice(0, 40);
}

/**
 * Access keys, their secrets sealed at rest. Secrets are kept in memory for
 * signature checks, which happen on every request.
 */
export class AccessKeys {
  private readonly store: Store;
  private readonly sealer: Sealer;
  private readonly cache = new Map<string, { secret: string; userName: string }>();

  constructor(store: Store, sealer: Sealer) {
    this.store = store;
    this.sealer = sealer;
  }

  /** Loads every active key; call once at start. */
  async load(): Promise<void> {
    const rows = await this.store.read((tx) =>
      tx.all<{ access_key_id: string; secret_sealed: string; user_name: string }>(
        "SELECT access_key_id, secret_sealed, user_name FROM access_keys WHERE status = 'Active'",
      ),
    );
    this.cache.clear();
    for (const row of rows) {
      this.cache.set(row.access_key_id, {
        secret: this.sealer.unseal(row.secret_sealed),
        userName: row.user_name,
      });
    }
  }

  /** The secret of an active key, for SigV4; synchronous because it sits on every request. */
  secretOf(accessKeyId: string): string | undefined {
    return this.cache.get(accessKeyId)?.secret;
  }

  /** The user an active key belongs to. */
  userOf(accessKeyId: string): string | undefined {
    return this.cache.get(accessKeyId)?.userName;
  }

  /** The admin key, created on first call and the same on every call after. */
  async ensureAdmin(now: Date): Promise<AccessKey> {
    const key = await this.store.transaction(async (tx) => {
      const existing = await tx.get<{ access_key_id: string; secret_sealed: string }>(
        "SELECT access_key_id, secret_sealed FROM access_keys WHERE user_name = ? AND status = 'Active' ORDER BY created_at LIMIT 1",
        ADMIN,
      );
      if (existing !== undefined) {
        return {
          accessKeyId: existing.access_key_id,
          secretAccessKey: this.sealer.unseal(existing.secret_sealed),
          userName: ADMIN,
        };
      }
      const created = { accessKeyId: newAccessKeyId(), secretAccessKey: newSecret(), userName: ADMIN };
      await tx.run(
        "INSERT INTO access_keys (access_key_id, secret_sealed, user_name, status, created_at) VALUES (?, ?, ?, 'Active', ?)",
        created.accessKeyId,
        this.sealer.seal(created.secretAccessKey),
        ADMIN,
        now.getTime(),
      );
      return created;
    });
    this.cache.set(key.accessKeyId, { secret: key.secretAccessKey, userName: key.userName });
    return key;
  }
}
