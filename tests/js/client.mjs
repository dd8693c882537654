// A titlechain client written from docs/protocol.md alone, with nothing but Node.js (>= 18):
// node:crypto for SHA-256 and Ed25519, fetch for the RPC, and the canonical msgpack encoder
// below. It exists to prove the protocol page is enough to write a client in another language.
//
//   node client.mjs vectors DIR             sign every vector in DIR (tests/vectors) again and
//                                           compare byte for byte; prints a JSON report
//   node client.mjs encode FILE             canonical(v) in hex for each case in FILE (see below)
//   node client.mjs submit URL KEYFILE OP ARGS_JSON
//                                           build, sign and POST one tx (?wait=true); prints the answer
//
// Exit 0 when everything matched / the node accepted the tx; 1 otherwise.

import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify } from "node:crypto";
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";

// -- signing domains (docs/protocol.md, "Signing domains") ---------------------------------------
export const DOMAINS = {
  tx: "titlechain/tx/v1\n",
  commit: "titlechain/commit/v2\n",
  consensus: "titlechain/consensus/v1\n",
  handshake: "titlechain/handshake/v1\n",
};

// -- canonical msgpack (docs/protocol.md, "Canonical encoding") ----------------------------------
const INT_MIN = -(2n ** 63n);
const INT_MAX = 2n ** 64n - 1n;
const MAX_DEPTH = 32;

function header(out, len, fix, fixMax, b16, b32) {
  if (len <= fixMax) out.push(Buffer.from([fix | len]));
  else if (len < 0x10000) { const b = Buffer.alloc(3); b[0] = b16; b.writeUInt16BE(len, 1); out.push(b); }
  else { const b = Buffer.alloc(5); b[0] = b32; b.writeUInt32BE(len, 1); out.push(b); }
}

function encodeInt(out, n) {
  // n is a BigInt in [-2^63, 2^64-1]; the smallest msgpack form, as msgpack-python chooses it
  if (n < INT_MIN || n > INT_MAX) throw new Error(`integer ${n} outside [-2^63, 2^64-1]`);
  if (n >= 0n) {
    if (n <= 0x7fn) out.push(Buffer.from([Number(n)]));
    else if (n <= 0xffn) out.push(Buffer.from([0xcc, Number(n)]));
    else if (n <= 0xffffn) { const b = Buffer.alloc(3); b[0] = 0xcd; b.writeUInt16BE(Number(n), 1); out.push(b); }
    else if (n <= 0xffffffffn) { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(Number(n), 1); out.push(b); }
    else { const b = Buffer.alloc(9); b[0] = 0xcf; b.writeBigUInt64BE(n, 1); out.push(b); }
  } else {
    if (n >= -32n) out.push(Buffer.from([Number(n) & 0xff]));
    else if (n >= -128n) { const b = Buffer.alloc(2); b[0] = 0xd0; b.writeInt8(Number(n), 1); out.push(b); }
    else if (n >= -32768n) { const b = Buffer.alloc(3); b[0] = 0xd1; b.writeInt16BE(Number(n), 1); out.push(b); }
    else if (n >= -(2n ** 31n)) { const b = Buffer.alloc(5); b[0] = 0xd2; b.writeInt32BE(Number(n), 1); out.push(b); }
    else { const b = Buffer.alloc(9); b[0] = 0xd3; b.writeBigInt64BE(n, 1); out.push(b); }
  }
}

function utf8(s) {
  if (!s.isWellFormed()) throw new Error("string is not valid UTF-8 (lone surrogate)");
  return Buffer.from(s, "utf8");
}

function encodeStr(out, s) {
  const b = utf8(s);
  if (b.length < 32) out.push(Buffer.from([0xa0 | b.length]));
  else if (b.length < 0x100) out.push(Buffer.from([0xd9, b.length]));
  else header(out, b.length, 0, -1, 0xda, 0xdb);
  out.push(b);
}

function encodeValue(out, v, depth) {
  if (v === null) out.push(Buffer.from([0xc0]));
  else if (v === false) out.push(Buffer.from([0xc2]));
  else if (v === true) out.push(Buffer.from([0xc3]));
  else if (typeof v === "bigint") encodeInt(out, v);
  else if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new Error(`${v}: no floats (and integers beyond 2^53 must be BigInt)`);
    encodeInt(out, BigInt(v));
  } else if (typeof v === "string") encodeStr(out, v);
  else if (depth >= MAX_DEPTH) throw new Error(`nested deeper than ${MAX_DEPTH} levels`);
  else if (Array.isArray(v)) {
    header(out, v.length, 0x90, 15, 0xdc, 0xdd);
    for (const x of v) encodeValue(out, x, depth + 1);
  } else if (typeof v === "object") {
    // keys sorted by their UTF-8 bytes: JS's own string order (UTF-16 code units) differs
    // for characters above U+FFFF against U+E000..U+FFFF
    const keys = Object.keys(v).map((k) => [utf8(k), k]).sort((a, b) => Buffer.compare(a[0], b[0]));
    header(out, keys.length, 0x80, 15, 0xde, 0xdf);
    for (const [, k] of keys) { encodeStr(out, k); encodeValue(out, v[k], depth + 1); }
  } else throw new Error(`${typeof v} is not a plain value`);
}

export function canonical(v) {
  const out = [];
  encodeValue(out, v, 0);
  return Buffer.concat(out);
}

// -- keys, hashes, signatures (docs/protocol.md, "Keys and accounts") ----------------------------
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex"); // RFC 8410 prefix of a 32-byte seed

export function keyFromSeed(seedHex) {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, Buffer.from(seedHex, "hex")]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  return { privateKey, account: spki.subarray(spki.length - 32).toString("hex") };
}

export const sha256hex = (bytes) => createHash("sha256").update(bytes).digest("hex");

export function signIn(domain, key, message) {
  return sign(null, Buffer.concat([Buffer.from(DOMAINS[domain], "ascii"), message]), key.privateKey).toString("hex");
}

const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex"); // RFC 8410 prefix of a 32-byte public key

export function verifyIn(domain, accountHex, message, sigHex) {
  if (!/^[0-9a-f]{64}$/.test(accountHex) || !/^[0-9a-f]{128}$/.test(sigHex)) return false;
  const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, Buffer.from(accountHex, "hex")]), format: "der", type: "spki" });
  return verify(null, Buffer.concat([Buffer.from(DOMAINS[domain], "ascii"), message]), key, Buffer.from(sigHex, "hex"));
}

// The quorum of n validators (docs/protocol.md, "Validator sets"): f = floor((n-1)/3), q = floor((n+f)/2) + 1
export const quorum = (n) => Math.floor((n + Math.floor((n - 1) / 3)) / 2) + 1;

// A commit certificate checked against a block and the validator set of its height
// (docs/protocol.md, "Commit certificates", rules 1-5); returns null if valid, else why not.
export function certificateProblem(cert, chainId, header, validators) {
  const fields = Object.keys(cert).sort().join(",");
  if (fields !== "block_hash,height,signatures,view") return `fields ${fields}`;
  if (!Number.isInteger(cert.height) || cert.height < 0 || !Number.isInteger(cert.view) || cert.view < 0) return "height/view";
  if (cert.height !== header.height || cert.block_hash !== sha256hex(canonical(header))) return "not this block";
  const members = new Set(validators.map((v) => v.public));
  const seen = new Set();
  const message = canonical({ chain_id: chainId, height: cert.height, view: cert.view, block_hash: cert.block_hash });
  for (const s of cert.signatures) {
    if (Object.keys(s).sort().join(",") !== "sig,validator") return "signature entry fields";
    if (seen.has(s.validator)) return `validator ${s.validator} twice`;
    if (!members.has(s.validator)) return `validator ${s.validator} not in the set`;
    if (!verifyIn("commit", s.validator, message, s.sig)) return `signature of ${s.validator} does not verify for view ${cert.view}`;
    seen.add(s.validator);
  }
  const q = quorum(validators.length);
  return seen.size >= q ? null : `${seen.size} signatures, a quorum is ${q}`;
}

export function signTx(key, body) {
  const bytes = canonical(body);
  return { tx: { body, sig: signIn("tx", key, bytes) }, txId: sha256hex(bytes), bodyHex: bytes.toString("hex") };
}

// -- vectors -------------------------------------------------------------------------------------
function checkVectors(dir) {
  const failures = [];
  const checked = { txs: 0, commit_votes: 0, hashes: 0, certificates: 0 };
  const same = (what, got, want) => { if (got !== want) failures.push(`${what}: got ${got}, want ${want}`); };
  const txv = JSON.parse(readFileSync(join(dir, "tx_vectors.json"), "utf8"));
  for (const [i, vec] of txv.txs.entries()) {
    const key = keyFromSeed(vec.seed);
    same(`txs[${i}] account`, key.account, vec.public);
    same(`txs[${i}] signing prefix`, DOMAINS.tx, vec.signing_prefix);
    const { tx, txId, bodyHex } = signTx(key, vec.tx.body);
    same(`txs[${i}] canonical body`, bodyHex, vec.canonical_body_hex);
    same(`txs[${i}] tx_id`, txId, vec.tx_id);
    same(`txs[${i}] sig`, tx.sig, vec.sig);
    checked.txs++;
  }
  const commitPath = join(dir, "commit_vectors.json");
  const cv = existsSync(commitPath) ? JSON.parse(readFileSync(commitPath, "utf8")) : {};
  for (const [i, vec] of [...(txv.commit_votes ?? []), ...(cv.commit_votes ?? [])].entries()) {
    const key = keyFromSeed(vec.seed);
    same(`commit_votes[${i}] account`, key.account, vec.public);
    same(`commit_votes[${i}] signing prefix`, DOMAINS.commit, vec.signing_prefix);
    const bytes = canonical(vec.vote);
    same(`commit_votes[${i}] canonical vote`, bytes.toString("hex"), vec.canonical_vote_hex);
    same(`commit_votes[${i}] sig`, signIn("commit", key, bytes), vec.sig);
    if (vec.signed_bytes_hex) {
      same(`commit_votes[${i}] signed bytes`, Buffer.concat([Buffer.from(DOMAINS.commit, "ascii"), bytes]).toString("hex"), vec.signed_bytes_hex);
    }
    checked.commit_votes++;
  }
  if (cv.header) {
    same("canonical header", canonical(cv.header).toString("hex"), cv.canonical_header_hex);
    same("block_hash", sha256hex(canonical(cv.header)), cv.block_hash);
    checked.hashes++;
  }
  if (cv.validators) {
    same("validators_hash", sha256hex(canonical(cv.validators)), cv.validators_hash);
    same("quorum", quorum(cv.validators.length), cv.quorum);
    cv.validator_seeds.forEach((seed, i) => same(`validators[${i}] account`, keyFromSeed(seed).account, cv.validators[i].public));
    checked.hashes++;
  }
  if (cv.certificate) {
    same("the valid certificate", certificateProblem(cv.certificate, cv.header.chain_id, cv.header, cv.validators), null);
    // signing the certificate's vote again with each signer's seed gives its signature byte for byte
    const seeds = new Map(cv.validator_seeds.map((seed) => [keyFromSeed(seed).account, seed]));
    const c = cv.certificate;
    const vote = canonical({ chain_id: cv.header.chain_id, height: c.height, view: c.view, block_hash: c.block_hash });
    for (const s of c.signatures) same(`certificate sig of ${s.validator}`, signIn("commit", keyFromSeed(seeds.get(s.validator)), vote), s.sig);
    checked.certificates = 1;
    for (const [i, bad] of (cv.invalid_certificates ?? []).entries()) {
      if (certificateProblem(bad.certificate, cv.header.chain_id, cv.header, cv.validators) === null) {
        failures.push(`invalid_certificates[${i}] accepted (${bad.why})`);
      }
      checked.certificates++;
    }
  }
  return { checked, failures };
}

// Cases for the encoder: {"value": v, "hex": canonical(v), or null if v must be refused}; an integer that JSON cannot carry
// exactly is written {"$int": "decimal"} and becomes a BigInt here.
function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$int") return BigInt(v.$int);
    return Object.fromEntries(keys.map((k) => [k, revive(v[k])]));
  }
  return v;
}

function checkEncodings(file) {
  const failures = [];
  const cases = JSON.parse(readFileSync(file, "utf8"));
  for (const [i, c] of cases.entries()) {
    let got;
    try { got = canonical(revive(c.value)).toString("hex"); } catch (e) { got = null; } // null: refused
    if (got !== c.hex) failures.push(`case ${i}: got ${got}, want ${c.hex}`);
  }
  return { checked: { encodings: cases.length }, failures };
}

// -- the RPC (docs/rpc.md) -----------------------------------------------------------------------
async function rpc(url, method, path, body) {
  const r = await fetch(url.replace(/\/$/, "") + path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await r.json();
  if (!r.ok) throw new Error(`${r.status} ${answer?.error?.code}: ${answer?.error?.message}`);
  return answer;
}

async function submit(url, keyFile, op, argsJson) {
  const file = JSON.parse(readFileSync(keyFile, "utf8"));
  const key = keyFromSeed(file.private);
  if (key.account !== file.public) throw new Error(`${keyFile}: public does not match the seed`);
  const status = await rpc(url, "GET", "/v1/status");
  const body = {
    chain_id: status.chain_id,
    signer: key.account,
    op,
    args: JSON.parse(argsJson),
    nonce: randomBytes(16).toString("hex"),
    expires: status.height + 100,
  };
  const { tx, txId } = signTx(key, body);
  const answer = await rpc(url, "POST", "/v1/txs?wait=true", tx);
  return { local_tx_id: txId, answer };
}

async function main(argv) {
  const [cmd, ...rest] = argv;
  let report;
  if (cmd === "vectors" && rest.length === 1) report = checkVectors(rest[0]);
  else if (cmd === "encode" && rest.length === 1) report = checkEncodings(rest[0]);
  else if (cmd === "submit" && rest.length === 4) {
    const { local_tx_id, answer } = await submit(...rest);
    const ok = answer.tx_id === local_tx_id && answer.receipt?.status === "ok";
    report = { checked: { submitted: 1 }, failures: ok ? [] : [`node answered ${JSON.stringify(answer)}`], local_tx_id, answer };
  } else {
    process.stderr.write("usage: client.mjs vectors DIR | encode FILE | submit URL KEYFILE OP ARGS_JSON\n");
    return 2;
  }
  process.stdout.write(JSON.stringify(report, null, 2) + "\n");
  return report.failures.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  process.stderr.write(`error: ${e.message}\n`);
  process.exit(1);
});
