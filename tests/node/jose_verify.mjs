// Reads JSON lines {id, token, jwks, algorithms, issuer, audience, leeway, now} on stdin and
// prints one JSON line {id, ok, code} per input, verifying with panva/jose's jwtVerify.
// Used by tests/verifier/test_crosscheck.py: ONE node process for the whole corpus.
import { createInterface } from "node:readline";
import { createLocalJWKSet, jwtVerify } from "jose";

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  const req = JSON.parse(line);
  let out;
  try {
    const keys = createLocalJWKSet(req.jwks);
    await jwtVerify(req.token, keys, {
      algorithms: req.algorithms,
      issuer: req.issuer,
      audience: req.audience,
      clockTolerance: req.leeway,
      currentDate: new Date(req.now * 1000),
      requiredClaims: ["exp", "iss", "aud"],
    });
    out = { id: req.id, ok: true, code: null };
  } catch (err) {
    out = { id: req.id, ok: false, code: err.code || String(err) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
