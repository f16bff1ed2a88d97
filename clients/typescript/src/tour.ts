// The README tour's core from TypeScript: upsert with consent, lookup, search, watch.
//
//   node dist/tour.js --addr 127.0.0.1:50051 --token vault_...
//
// The token is a campaign tool's with the newsletter purpose. Exits non-zero, saying what
// differed, if the daemon does not answer as the README says.

import { randomUUID } from 'node:crypto';
import { strict as assert } from 'node:assert';
import * as grpc from '@grpc/grpc-js';

import { Vault } from './vault';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? process.argv[i + 1] : undefined;
  if (!value) {
    throw new Error(`--${name} is required`);
  }
  return value;
}

async function main(): Promise<void> {
  const run = randomUUID().slice(0, 8);
  const email = `Marie.Curie+ts${run}@Example.FR`;
  const tag = `ts-${run}`;
  const vault = new Vault({ addr: arg('addr'), token: arg('token'), purpose: 'newsletter' });
  try {
    const up = await vault.upsert(
      { email, given_name: 'Marie', family_name: 'Curie', tags: [tag] },
      [{ purpose: 'newsletter', channel: 'email', source: 'form', notice_version: '2026-03', contact_email: email }],
    );
    assert.ok(up.created, `a new email makes a new supporter: ${JSON.stringify(up)}`);
    const again = await vault.upsert({ email: email.toUpperCase(), tags: [tag] });
    assert.deepEqual([again.id, again.created], [up.id, false], 'same email, same supporter');

    const found = await vault.lookupEmail(email.toLowerCase());
    assert.equal(found.id, up.id, 'lookup by email');
    assert.equal(found.email, email.toLowerCase(), 'the email is stored normalized');
    assert.equal(found.phone, '', 'the newsletter never sees a phone');

    const segment = (await vault.search([tag])).map((s) => s.id);
    assert.deepEqual(segment, [up.id], 'the segment by tag');

    // The change feed from the start until this person's events appear.
    const kinds: string[] = [];
    const stream = vault.watch();
    const timer = setTimeout(() => stream.cancel(), 30_000);
    try {
      for await (const event of stream) {
        if (event.subject_id === up.id) {
          kinds.push(event.kind);
          if (kinds.length >= 2) {
            break;
          }
        }
      }
    } catch (e) {
      if ((e as grpc.ServiceError).code !== grpc.status.CANCELLED) {
        throw e;
      }
    } finally {
      clearTimeout(timer);
      stream.cancel();
    }
    assert.ok(kinds.length > 0, 'Watch delivered no event about the new supporter');

    // Someone not in the file is answered NOT_FOUND.
    await assert.rejects(vault.lookupEmail(`nobody-${run}@example.fr`), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.NOT_FOUND);
      return true;
    });
    console.log(`typescript tour: ok (supporter ${up.id}, watch saw ${kinds.join(', ')})`);
  } finally {
    vault.close();
  }
}

main().catch((e) => {
  console.error(`typescript tour: FAILED: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
