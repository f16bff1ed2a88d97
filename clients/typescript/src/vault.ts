// A small TypeScript client for the vault's gRPC API (vault.v1) on Node.js.
//
// The types in ./generated come from proto/ (npm run generate, @grpc/proto-loader's
// proto-loader-gen-types); at run time the same .proto files are loaded from PROTO_DIR.
// This module adds what every call needs: the token (authorization: Bearer ...), the
// purpose of the call (x-vault-purpose) and a request id for the access log.

import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated/supporters';
import type { SupportersClient } from './generated/vault/v1/Supporters';
import type { ConsentRequest } from './generated/vault/v1/ConsentRequest';
import type { Supporter, Supporter__Output } from './generated/vault/v1/Supporter';
import type { UpsertResponse__Output } from './generated/vault/v1/UpsertResponse';
import type { ChangeEvent__Output } from './generated/vault/v1/ChangeEvent';

/** Reply header of Supporters.Search holding the next page's token. */
export const NEXT_PAGE_TOKEN = 'x-vault-next-page-token';

export interface VaultOptions {
  /** The daemon's address, host:port. */
  addr: string;
  /** The client's token. */
  token: string;
  /** The purpose every call is made for. */
  purpose?: string;
  /** PEM of the CA that signed the daemon's certificate (TLS); plaintext when absent. */
  caCert?: Buffer;
  /** Where vault/v1/*.proto are (default: PROTO_DIR, or ../../proto). */
  protoDir?: string;
}

export class Vault {
  readonly supporters: SupportersClient;
  private readonly token: string;
  private readonly purpose?: string;

  constructor(options: VaultOptions) {
    const protoDir = options.protoDir ?? process.env.PROTO_DIR ?? path.join(__dirname, '..', '..', '..', 'proto');
    const definition = protoLoader.loadSync(['vault/v1/supporters.proto'], {
      includeDirs: [protoDir],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const proto = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
    const credentials = options.caCert
      ? grpc.credentials.createSsl(options.caCert)
      : grpc.credentials.createInsecure();
    this.supporters = new proto.vault.v1.Supporters(options.addr, credentials);
    this.token = options.token;
    this.purpose = options.purpose;
  }

  close(): void {
    this.supporters.close();
  }

  /** The call metadata: token, purpose, and a fresh request id. */
  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.token}`);
    md.set('x-request-id', randomUUID());
    if (this.purpose) {
      md.set('x-vault-purpose', this.purpose);
    }
    return md;
  }

  upsert(supporter: Supporter, consents: ConsentRequest[] = []): Promise<UpsertResponse__Output> {
    return new Promise((resolve, reject) => {
      this.supporters.Upsert({ supporter, consents }, this.metadata(), (err, reply) =>
        err || !reply ? reject(err) : resolve(reply),
      );
    });
  }

  lookupEmail(email: string): Promise<Supporter__Output> {
    return new Promise((resolve, reject) => {
      this.supporters.Lookup({ email }, this.metadata(), (err, reply) =>
        err || !reply ? reject(err) : resolve(reply),
      );
    });
  }

  /** Every supporter with all these tags, page by page. */
  async search(tagsAll: string[]): Promise<Supporter__Output[]> {
    const found: Supporter__Output[] = [];
    let pageToken = '';
    do {
      const stream = this.supporters.Search({ tags_all: tagsAll, page_token: pageToken }, this.metadata());
      let next = '';
      stream.on('metadata', (md: grpc.Metadata) => {
        next = String(md.get(NEXT_PAGE_TOKEN)[0] ?? '');
      });
      for await (const supporter of stream) {
        found.push(supporter as Supporter__Output);
      }
      pageToken = next;
    } while (pageToken);
    return found;
  }

  /** The change feed from `cursor`: a live stream, cancel it when done. */
  watch(cursor = ''): grpc.ClientReadableStream<ChangeEvent__Output> {
    return this.supporters.Watch({ cursor }, this.metadata());
  }
}
