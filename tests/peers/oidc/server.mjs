// Test peer owned by tests/it/peer_oidc.rs: a real OAuth2 authorization server (panva/oidc-provider 9)
// plus a canary API that verifies the tokens it issues. Loopback only. Started by
// tests/it/support/peers.rs (`OidcPeer::start`), which reads the one `OIDC_PEER_READY {json}` line
// this script prints on stdout once it accepts connections.
//
// Usage: node server.mjs [--port N] [--opaque] [--ttl SECONDS] [--keys FILE] [--client-keys DIR]
//                        [--tls DIR] [--dpop]
//   --port   TCP port on 127.0.0.1 (default: env OIDC_PEER_PORT, else 0 = a free port chosen by the OS)
//   --opaque issue opaque access tokens instead of RS256 JWTs
//   --ttl    access token lifetime in seconds (default 90: short, so expires_in is checkable)
//   --keys   JWKS file holding the private signing key: read if it exists, else generated and
//            written. Two instances given the same file sign with the same key, so a canary that
//            rejects the other instance's token proves its *issuer* check, not just a key mismatch.
//   --client-keys  directory for the client keys of the private_key_jwt clients (issue 12): the
//            script generates them per run and writes `rsa.key` (PKCS#1; also as PKCS#8 in
//            `rsa.pkcs8.key`), `ec.key` (SEC1 P-256)
//            and `unregistered.key` (PKCS#8 RSA, registered nowhere), mode 0600, and registers
//            the public halves of the first two (JWKS) with `private-key-rs256-client` and
//            `private-key-es256-client`. Without it those clients are not registered.
//   --tls    directory holding `server.crt`, `server.key` and `client-ca.crt`: serve HTTPS,
//            request a client certificate, and register `mtls-client` (tls_client_auth,
//            subject `CN=oauth2-exporter-mtls`, which a certificate from client-ca.crt must carry)
//            and `mtls-bound-client` (the same, its tokens bound to the certificate, RFC 8705).
//   --dpop   DPoP (RFC 9449, issue 25): the token endpoint takes DPoP proofs and requires its
//            nonce in them (features.dPoP with nonceSecret and requireNonce), `dpop-client`
//            (client_secret_post) gets only DPoP-bound tokens (dpop_bound_access_tokens), and a
//            second listener (another origin, as an API apart from its identity provider) serves
//            `/api/dpop-canary`: 200 only for `Authorization: DPoP <token>` with a token of this
//            issuer whose cnf.jkt is the proof's key, and a proof that verifies with that key,
//            with htm, htu, ath, a fresh iat and a jti never seen, and the API's own nonce,
//            which it demands (401 DPoP error="use_dpop_nonce") when the proof lacks it.
//
// `POST /_peer/discovery?up=0` (and `?up=1`) switches the discovery documents to 503 and back.
//
// The process exits when its stdin closes, so a test runner that dies cannot leave it behind.

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  calculateJwkThumbprint, createLocalJWKSet, EmbeddedJWK, exportJWK, generateKeyPair, jwtVerify,
} from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PEER_PORT ?? '0' },
    opaque: { type: 'boolean', default: false },
    ttl: { type: 'string', default: '90' },
    keys: { type: 'string' },
    'client-keys': { type: 'string' },
    tls: { type: 'string' },
    dpop: { type: 'boolean', default: false },
  },
});

const ttl = Number.parseInt(args.ttl, 10);
const port = Number.parseInt(args.port, 10);
if (!Number.isInteger(ttl) || ttl <= 0 || !Number.isInteger(port) || port < 0) {
  console.error('usage: node server.mjs [--port N] [--opaque] [--ttl SECONDS] [--keys FILE]');
  process.exit(2);
}

// The one resource server (API) the canary stands for. A URN rather than the canary's URL so two
// instances (two issuers) share the same audience: the issuer is then the only difference.
const RESOURCE = 'urn:oauth2-exporter:peer-api';
const API_SCOPE = 'api:read';
// Known to the server (so requesting it is checked) but granted to no client: -> invalid_scope.
const FORBIDDEN_SCOPE = 'api:admin';

// Fresh random secrets per run: tests that grep logs for leaked secrets need values that cannot
// appear by accident.
const secret = () => randomBytes(24).toString('base64url');
const clients = [
  { client_id: 'basic-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: 'post-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_post' },
];
// client_secret_jwt: the secret is the HS256 key (oidc-provider wants at least 32 bytes for it).
clients.push({ client_id: 'secret-jwt-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_jwt' });

// private_key_jwt: keys generated per run, private halves written for the test to configure.
async function clientKeyClients(dir) {
  const write = (name, pem) => writeFileSync(join(dir, name), pem, { mode: 0o600 });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const unregistered = generateKeyPairSync('rsa', { modulusLength: 2048 });
  write('rsa.key', rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }));
  // The same RSA key as PKCS#8, for a test to make a certificate of it (rcgen reads PKCS#8).
  write('rsa.pkcs8.key', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  write('ec.key', ec.privateKey.export({ type: 'sec1', format: 'pem' }));
  write('unregistered.key', unregistered.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const jwk = async (key) => ({ ...(await exportJWK(key.publicKey)), use: 'sig' });
  return [
    { client_id: 'private-key-rs256-client', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [await jwk(rsa)] } },
    { client_id: 'private-key-es256-client', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [await jwk(ec)] } },
  ];
}
if (args['client-keys']) {
  clients.push(...(await clientKeyClients(args['client-keys'])));
}
const MTLS_SUBJECT = 'CN=oauth2-exporter-mtls';
if (args.tls) {
  clients.push({ client_id: 'mtls-client', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: MTLS_SUBJECT });
}
if (args.dpop) {
  clients.push({ client_id: 'dpop-client', client_secret: secret(), token_endpoint_auth_method: 'client_secret_post', dpop_bound_access_tokens: true });
}
// Issue 25: the same certificate, but tokens bound to it (RFC 8705 section 3: `cnf.x5t#S256`).
if (args.tls) {
  clients.push({
    client_id: 'mtls-bound-client',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: MTLS_SUBJECT,
    tls_client_certificate_bound_access_tokens: true,
  });
}
const registeredMethod = new Map(clients.map((c) => [c.client_id, c.token_endpoint_auth_method]));

async function signingKeys() {
  if (args.keys && existsSync(args.keys)) {
    return JSON.parse(readFileSync(args.keys, 'utf8'));
  }
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: secret() };
  const jwks = { keys: [jwk] };
  if (args.keys) {
    writeFileSync(args.keys, JSON.stringify(jwks), { mode: 0o600 });
  }
  return jwks;
}

// What the peer saw, for tests to cross-check the exporter's metrics against the server side.
// `assertions`: per client, how many client assertions it sent, how many reused a jti, the last
// one (a test replays it: it must be refused) and its decoded header; `secret_with_assertion`
// counts requests that carried a client_secret next to an assertion (never allowed);
// `discovery`: the metadata documents served, by path (and `503 path` while switched off).
const stats = { token: {}, canary: {}, assertions: {}, secret_with_assertion: 0, discovery: {} };
// With --dpop: `dpop_token_errors`, the token endpoint's errors by code (use_dpop_nonce when
// a proof lacked its nonce); `dpop_canary`, the DPoP API's answers by status,
// `nonce_demands` and each refusal's reason in `refused`.
if (args.dpop) {
  stats.dpop_token_errors = {};
  stats.dpop_canary = { nonce_demands: 0, refused: [] };
}
const seenJti = new Set();

// Test switch (issue 12): while true, the discovery documents answer 503, as an identity
// provider whose metadata endpoint is down while its token endpoint still works.
let discoveryDown = false;
const bump = (table, key) => { table[key] = (table[key] ?? 0) + 1; };

function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// RFC 6749 2.3.1: client id and secret are form-urlencoded before being joined for Basic.
const formDecode = (s) => decodeURIComponent(s.replace(/\+/g, '%20'));

// oidc-provider accepts client_secret_basic and client_secret_post from any client. Real servers
// (and the point of this peer) enforce the registered method: a client must be rejected when it
// authenticates with the other one. Go's oauth2 library caches the method per token URL, so a basic
// client and a post client on one token URL break each other there; this makes such a bug visible.
async function enforceRegisteredAuthMethod(ctx, next) {
  if (ctx.method !== 'POST' || ctx.path !== '/token' || !ctx.is('application/x-www-form-urlencoded')) {
    return next();
  }
  const raw = await readBody(ctx.req);
  // oidc-provider reads an already consumed body from req.body (it logs a one-time notice).
  ctx.req.body = raw;
  const form = new URLSearchParams(raw);
  let used;
  let clientId;
  const authz = ctx.get('authorization');
  if (form.has('client_assertion')) {
    used = 'client_assertion';
    clientId = form.get('client_id') ?? undefined;
    const assertion = form.get('client_assertion');
    const [header, payload] = assertion.split('.').slice(0, 2).map((part) => {
      try { return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')); } catch { return {}; }
    });
    const seen = stats.assertions[clientId ?? '-'] ??= { count: 0, reused_jti: 0 };
    seen.count += 1;
    if (seenJti.has(`${payload.iss} ${payload.jti}`)) seen.reused_jti += 1;
    seenJti.add(`${payload.iss} ${payload.jti}`);
    seen.last = assertion;
    seen.header = header;
    seen.claims = payload;
    if (form.has('client_secret')) stats.secret_with_assertion += 1;
  } else if (/^basic /i.test(authz)) {
    used = 'client_secret_basic';
    const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    clientId = i === -1 ? undefined : formDecode(decoded.slice(0, i));
  } else if (form.has('client_secret')) {
    used = 'client_secret_post';
    clientId = form.get('client_id') ?? undefined;
  } else {
    clientId = form.get('client_id') ?? undefined;
  }
  const registered = registeredMethod.get(clientId);
  bump(stats.token, `${clientId ?? '-'} ${used ?? 'none'}`);
  // oidc-provider itself enforces the registered method for assertions and tls_client_auth.
  const enforced = used === 'client_secret_basic' || used === 'client_secret_post';
  if (enforced && registered && used !== registered) {
    ctx.status = 401;
    ctx.set('cache-control', 'no-store');
    if (used === 'client_secret_basic') {
      ctx.set('www-authenticate', `Basic realm="${ctx.origin}"`);
    }
    ctx.body = {
      error: 'invalid_client',
      error_description: `client authentication method ${used} is not the registered ${registered}`,
    };
    return undefined;
  }
  return next();
}

const server = args.tls
  ? https.createServer({
    cert: readFileSync(join(args.tls, 'server.crt')),
    key: readFileSync(join(args.tls, 'server.key')),
    ca: readFileSync(join(args.tls, 'client-ca.crt')),
    // Asked for, verified against client-ca.crt, but not required at the handshake: an unknown
    // or expired certificate then reaches oidc-provider, which answers invalid_client.
    requestCert: true,
    rejectUnauthorized: false,
  })
  : http.createServer();
server.listen(port, '127.0.0.1', async () => {
  const actualPort = server.address().port;
  const issuer = `${args.tls ? 'https' : 'http'}://127.0.0.1:${actualPort}`;
  const jwks = await signingKeys();
  const format = args.opaque ? 'opaque' : 'jwt';

  const provider = new Provider(issuer, {
    clientAuthMethods: [
      'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt',
      ...(args.tls ? ['tls_client_auth'] : []),
    ],
    clients: clients.map((c) => ({
      ...c,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: API_SCOPE,
    })),
    jwks,
    cookies: { keys: [secret()] },
    scopes: ['openid', API_SCOPE, FORBIDDEN_SCOPE],
    features: {
      devInteractions: { enabled: false },
      mTLS: {
        enabled: Boolean(args.tls),
        tlsClientAuth: Boolean(args.tls),
        certificateBoundAccessTokens: Boolean(args.tls),
        getCertificate: (ctx) => ctx.socket.getPeerX509Certificate?.(),
        certificateAuthorized: (ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn'
          && ctx.socket.getPeerX509Certificate?.()?.subject === expected,
      },
      clientCredentials: { enabled: true },
      ...(args.dpop ? {
        dPoP: { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true },
      } : {}),
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Tokens are always for the API, whether or not the client sends `resource`.
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          if (indicator !== RESOURCE) {
            throw new Provider.errors.InvalidTarget(`unknown resource ${indicator}`);
          }
          return {
            scope: `${API_SCOPE} ${FORBIDDEN_SCOPE}`,
            audience: RESOURCE,
            accessTokenTTL: ttl,
            accessTokenFormat: format,
            ...(format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
          };
        },
      },
    },
    ttl: { ClientCredentials: ttl },
    // oidc-provider's default is ES256 and EdDSA only; the exporter also signs RS256 and PS256.
    ...(args.dpop ? { enabledJWA: { dPoPSigningAlgValues: ['ES256', 'PS256', 'RS256'] } } : {}),
  });
  if (args.dpop) {
    provider.on('grant.error', (_ctx, err) => bump(stats.dpop_token_errors, err.error ?? 'unknown'));
  }
  provider.use(enforceRegisteredAuthMethod);
  const providerHandler = provider.callback();
  const publicJwks = createLocalJWKSet({
    keys: jwks.keys.map(({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use })),
  });

  // The canary API: 200 for a token this issuer issued for the API with the API scope, else 401.
  async function canary(req, res) {
    const m = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '');
    let verdict;
    let claims;
    try {
      if (!m) throw new Error('no bearer token');
      if (args.opaque) {
        const token = await provider.ClientCredentials.find(m[1]);
        if (!token) throw new Error('unknown or expired opaque token');
        claims = { aud: token.aud, scope: token.scope, client_id: token.clientId };
      } else {
        ({ payload: claims } = await jwtVerify(m[1], publicJwks, {
          issuer,
          audience: RESOURCE,
          algorithms: ['RS256'],
        }));
      }
      if (claims.aud !== RESOURCE && !(Array.isArray(claims.aud) && claims.aud.includes(RESOURCE))) {
        throw new Error('wrong audience');
      }
      if (!String(claims.scope ?? '').split(' ').includes(API_SCOPE)) {
        throw new Error(`missing scope ${API_SCOPE}`);
      }
      verdict = 200;
    } catch (err) {
      verdict = 401;
      claims = { error: 'invalid_token', error_description: err.code ?? err.message };
    }
    bump(stats.canary, verdict);
    res.writeHead(verdict, {
      'content-type': 'application/json',
      ...(verdict === 401 ? { 'www-authenticate': 'Bearer error="invalid_token"' } : {}),
    });
    res.end(JSON.stringify(verdict === 200 ? { ok: true, client_id: claims.client_id } : claims));
  }

  server.on('request', (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/api/canary') {
      canary(req, res);
    } else if (path === '/_peer/stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
    } else if (path === '/_peer/discovery' && req.method === 'POST') {
      discoveryDown = new URL(req.url, issuer).searchParams.get('up') === '0';
      res.writeHead(204);
      res.end();
    } else if (path.startsWith('/.well-known/') && discoveryDown) {
      bump(stats.discovery, `503 ${path}`);
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('discovery switched off by the test');
    } else {
      if (path.startsWith('/.well-known/')) {
        bump(stats.discovery, path);
      }
      providerHandler(req, res);
    }
  });

  const dpopCanaryUrl = args.dpop ? await startDpopApi(issuer, publicJwks) : null;

  const ready = {
    issuer,
    port: actualPort,
    token_url: `${issuer}/token`,
    jwks_url: `${issuer}/jwks`,
    canary_url: `${issuer}/api/canary`,
    stats_url: `${issuer}/_peer/stats`,
    resource: RESOURCE,
    scope: API_SCOPE,
    forbidden_scope: FORBIDDEN_SCOPE,
    ttl,
    opaque: args.opaque,
    basic_client: { id: clients[0].client_id, secret: clients[0].client_secret },
    post_client: { id: clients[1].client_id, secret: clients[1].client_secret },
    secret_jwt_client: { id: clients[2].client_id, secret: clients[2].client_secret },
    client_keys: args['client-keys'] ?? null,
    mtls_subject: args.tls ? MTLS_SUBJECT : null,
    dpop_client: args.dpop ? { id: 'dpop-client', secret: clients.find((c) => c.client_id === 'dpop-client').client_secret } : null,
    dpop_canary_url: dpopCanaryUrl,
  };
  process.stdout.write(`OIDC_PEER_READY ${JSON.stringify(ready)}\n`);
});

// The DPoP API of --dpop, on a listener of its own: returns its canary URL once it listens.
async function startDpopApi(issuer, publicJwks) {
  const apiNonce = secret();
  const seenProofJti = new Set();
  const api = http.createServer();
  await new Promise((resolve) => { api.listen(0, '127.0.0.1', resolve); });
  const url = `http://127.0.0.1:${api.address().port}/api/dpop-canary`;
  const answer = (res, status, headers, body) => {
    bump(stats.dpop_canary, status);
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  api.on('request', async (req, res) => {
    if (req.url.split('?')[0] !== '/api/dpop-canary') {
      answer(res, 404, {}, { error: 'not_found' });
      return;
    }
    try {
      const m = /^DPoP ([^\s]+)$/.exec(req.headers.authorization ?? '');
      if (!m) throw new Error('no Authorization: DPoP token');
      const token = m[1];
      const { payload: claims } = await jwtVerify(token, publicJwks, {
        issuer, audience: RESOURCE, algorithms: ['RS256'],
      });
      if (!String(claims.scope ?? '').split(' ').includes(API_SCOPE)) throw new Error(`missing scope ${API_SCOPE}`);
      const proof = req.headers.dpop;
      if (typeof proof !== 'string') throw new Error('no DPoP proof');
      const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
        typ: 'dpop+jwt', algorithms: ['ES256', 'PS256', 'RS256'],
      });
      if (claims.cnf?.jkt !== await calculateJwkThumbprint(protectedHeader.jwk)) throw new Error('cnf.jkt is not the proof key');
      if (payload.htm !== req.method) throw new Error('htm mismatch');
      if (payload.htu !== url) throw new Error(`htu mismatch: ${payload.htu}`);
      if (payload.ath !== createHash('sha256').update(token).digest('base64url')) throw new Error('ath mismatch');
      if (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > 60) throw new Error('iat is not recent');
      if (typeof payload.jti !== 'string' || seenProofJti.has(payload.jti)) throw new Error('jti missing or replayed');
      seenProofJti.add(payload.jti);
      if (payload.nonce !== apiNonce) {
        stats.dpop_canary.nonce_demands += 1;
        answer(res, 401, {
          'www-authenticate': 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
          'dpop-nonce': apiNonce,
        }, { error: 'use_dpop_nonce' });
        return;
      }
      answer(res, 200, {}, { ok: true, client_id: claims.client_id });
    } catch (err) {
      const why = err.code ?? err.message;
      stats.dpop_canary.refused.push(why);
      answer(res, 401, { 'www-authenticate': `DPoP error="invalid_dpop_proof", error_description="${why}"` }, { error: 'invalid_dpop_proof', error_description: why });
    }
  });
  return url;
}

server.on('error', (err) => {
  console.error(`oidc peer: ${err.message}`);
  process.exit(1);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
