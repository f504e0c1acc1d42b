// Test peer owned by tests/peer_oidc.rs: a real OAuth2 authorization server (panva/oidc-provider 9)
// plus a canary API that verifies the tokens it issues. Loopback only. Started by
// tests/support/peers.rs (`OidcPeer::start`), which reads the one `OIDC_PEER_READY {json}` line
// this script prints on stdout once it accepts connections.
//
// Usage: node server.mjs [--port N] [--opaque] [--ttl SECONDS] [--keys FILE]
//   --port   TCP port on 127.0.0.1 (default: env OIDC_PEER_PORT, else 0 = a free port chosen by the OS)
//   --opaque issue opaque access tokens instead of RS256 JWTs
//   --ttl    access token lifetime in seconds (default 90: short, so expires_in is checkable)
//   --keys   JWKS file holding the private signing key: read if it exists, else generated and
//            written. Two instances given the same file sign with the same key, so a canary that
//            rejects the other instance's token proves its *issuer* check, not just a key mismatch.
//
// `POST /_peer/discovery?up=0` (and `?up=1`) switches the discovery documents to 503 and back.
//
// The process exits when its stdin closes, so a test runner that dies cannot leave it behind.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PEER_PORT ?? '0' },
    opaque: { type: 'boolean', default: false },
    ttl: { type: 'string', default: '90' },
    keys: { type: 'string' },
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
const stats = { token: {}, canary: {}, discovery: {} };

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
  if (/^basic /i.test(authz)) {
    used = 'client_secret_basic';
    const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    clientId = i === -1 ? undefined : formDecode(decoded.slice(0, i));
  } else if (form.has('client_secret')) {
    used = 'client_secret_post';
    clientId = form.get('client_id') ?? undefined;
  }
  const registered = registeredMethod.get(clientId);
  bump(stats.token, `${clientId ?? '-'} ${used ?? 'none'}`);
  if (used && registered && used !== registered) {
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

const server = http.createServer();
server.listen(port, '127.0.0.1', async () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;
  const jwks = await signingKeys();
  const format = args.opaque ? 'opaque' : 'jwt';

  const provider = new Provider(issuer, {
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
      clientCredentials: { enabled: true },
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
  });
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
  };
  process.stdout.write(`OIDC_PEER_READY ${JSON.stringify(ready)}\n`);
});

server.on('error', (err) => {
  console.error(`oidc peer: ${err.message}`);
  process.exit(1);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
