// Verify tokens against a live issuer with panva/jose, the way a Node relying party would:
// createRemoteJWKSet(jwks_uri from discovery) + jwtVerify(issuer, audience).
//
//   node verify_remote_jwks.mjs ISSUER AUDIENCE < tokens (one per line)
//
// Prints one JSON array (one result per token: {ok, kid, sub} or {ok:false, code, message});
// exits 0 only if every token verified. Used by tests/issuer/test_serve_e2e.py.
import { createRemoteJWKSet, jwtVerify } from "jose";
import { readFileSync } from "node:fs";

const [issuer, audience] = process.argv.slice(2);
const tokens = readFileSync(0, "utf8").split("\n").map((s) => s.trim()).filter(Boolean);

const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
if (discovery.issuer !== issuer) {
  console.error(`discovery issuer ${discovery.issuer} != ${issuer}`);
  process.exit(2);
}
const JWKS = createRemoteJWKSet(new URL(discovery.jwks_uri));

const results = [];
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, JWKS, {
      issuer,
      audience,
      algorithms: discovery.id_token_signing_alg_values_supported,
    });
    results.push({ ok: true, kid: protectedHeader.kid, sub: payload.sub });
  } catch (e) {
    results.push({ ok: false, code: e.code ?? null, message: String(e.message) });
  }
}
console.log(JSON.stringify(results));
process.exit(results.every((r) => r.ok) ? 0 : 1);
